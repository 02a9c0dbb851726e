/* The plugin side of the ABI: one exported entry function per shared library, returning the
 * descriptor of the one modifier the library registers.
 *
 * Lifecycle of an instance (the host enforces the order; the SDK's C++ layer also checks it):
 *   create -> on_initialize -> { on_event and the dispatched hooks }* -> on_finalize -> destroy
 * The host calls an instance from one thread at a time. */
#ifndef LLMC_PLUGIN_H
#define LLMC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "host.h"
#include "status.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque, plugin-owned instance state. */
typedef struct llmc_modifier llmc_modifier_t;

enum {
    /* The modifier needs calibration data whatever its parameters (GPTQ, AWQ, SparseGPT...). */
    LLMC_MODIFIER_REQUIRES_DATA = 1u << 0
};

/* Event callbacks: called by the host with the event (host-owned, valid for the call). */
typedef llmc_status_t (*llmc_modifier_event_fn)(llmc_modifier_t *self, const llmc_event_t *event,
                                                 llmc_error_sink_t *err);

/* Owned by the plugin, static, valid while the library is loaded. All strings are UTF-8. */
typedef struct llmc_modifier_descriptor {
    uint32_t struct_size;       /* sizeof(llmc_modifier_descriptor_t) the plugin was built with */
    llmc_version_t abi_version; /* LLMC_ABI_VERSION_INIT of the headers it was built with */

    const char *name;        /* required: the recipe key, e.g. "GPTQModifier" */
    const char *version;     /* required: the plugin's own version, "MAJOR.MINOR.PATCH" */
    const char *description; /* required, may be "": one line */
    /* required: a JSON array describing the parameters, one object each:
     * {"name": "block_size", "type": "int", "default": 128, "required": false,
     *  "description": "...", "choices": [...], "minimum": x, "maximum": y,
     *  "exclusive_minimum": x, "nullable": true}
     * (null is accepted for a parameter whose default is null or that is nullable)
     * types: bool, int, float, string, string_list (a string or a list of strings), float_list,
     * any (any JSON value: mappings such as config_groups). */
    const char *params_json;
    uint32_t flags; /* LLMC_MODIFIER_* */

    /* Creates an instance from the recipe's fields as canonical JSON (an object; defaults not
     * filled in). Unknown or invalid fields fail with LLMC_ERR_INVALID_ARG and a message naming
     * the field. `host` is valid until destroy returns. On success *out is set. [host-thread] */
    llmc_status_t (*create)(const llmc_host_t *host, const char *params_json, llmc_modifier_t **out,
                            llmc_error_sink_t *err);
    /* Destroys an instance (finalized or not). Never fails. [host-thread] */
    void (*destroy)(llmc_modifier_t *self);
    /* Non-zero when this instance needs calibration data (may depend on its parameters, as
     * llm-compressor's QuantizationMixin). NULL means: the REQUIRES_DATA flag decides. */
    int (*requires_calibration_data)(llmc_modifier_t *self);

    /* Required: once, before calibration. */
    llmc_status_t (*on_initialize)(llmc_modifier_t *self, llmc_error_sink_t *err);
    /* Optional (NULL = nothing to do): once, after every pipeline. Must be safe to call twice. */
    llmc_status_t (*on_finalize)(llmc_modifier_t *self, llmc_error_sink_t *err);
    /* Optional: every event, before the hooks below. Unknown event types must be ignored. */
    llmc_modifier_event_fn on_event;
    /* Optional training-lifecycle hooks: on_start when start <= current_index, on_update on every
     * event while active, on_end when end <= current_index. */
    llmc_modifier_event_fn on_start;
    llmc_modifier_event_fn on_update;
    llmc_modifier_event_fn on_end;
    /* Optional calibration hooks, on CALIBRATION_START, SEQUENTIAL_EPOCH_END, CALIBRATION_END. */
    llmc_modifier_event_fn on_calibration_start;
    llmc_modifier_event_fn on_sequential_epoch_end;
    llmc_modifier_event_fn on_calibration_end;
} llmc_modifier_descriptor_t;

/* The one exported symbol. Side-effect free and cheap; returns the same pointer every call. */
#define LLMC_PLUGIN_ENTRY_SYMBOL "llmc_plugin_entry"
typedef const llmc_modifier_descriptor_t *(*llmc_plugin_entry_fn)(void);

#if defined(_WIN32)
#define LLMC_EXPORT __declspec(dllexport)
#else
#define LLMC_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
}
#endif

#endif
