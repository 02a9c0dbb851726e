/* Status codes and the host-owned error sink. Exceptions never cross the ABI: a failing call
 * returns a non-zero status and may describe the failure through the sink it was given. */
#ifndef LLMC_STATUS_H
#define LLMC_STATUS_H

#include <stdint.h>

typedef int32_t llmc_status_t;

enum {
    LLMC_OK = 0,
    LLMC_ERR_UNKNOWN = 1,       /* anything not below */
    LLMC_ERR_INTERNAL = 2,      /* a bug or an escaped exception caught by a barrier */
    LLMC_ERR_INVALID_ARG = 3,   /* bad parameter, bad tensor, bad recipe field */
    LLMC_ERR_NOT_FOUND = 4,     /* no such module, tensor, extension */
    LLMC_ERR_UNSUPPORTED = 5,   /* valid request this host or plugin cannot do */
    LLMC_ERR_UNAVAILABLE = 6,   /* service not available now (e.g. replay outside a layer) */
    LLMC_ERR_CANCELLED = 7,     /* the user cancelled the run */
    LLMC_ERR_BAD_STATE = 8,     /* call out of lifecycle order */
    LLMC_ERR_OUT_OF_MEMORY = 9
};

/* Filled by the host, passed into every fallible call. The callee reports with
 * `err->set(err, code, message)`; the host copies the message (valid for the call only) and
 * keeps the first one. `set` is safe to call with a NULL message. [thread-safe]
 * Ownership: host-owned; valid for the duration of the call it was passed to. */
typedef struct llmc_error_sink llmc_error_sink_t;
struct llmc_error_sink {
    uint32_t struct_size;
    void *host_data; /* host-owned: plugins never touch it */
    void (*set)(llmc_error_sink_t *sink, llmc_status_t code, const char *message);
};

#endif
