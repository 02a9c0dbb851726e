/* llmc ABI version. The host refuses a plugin whose major differs from its own, or whose minor
 * is newer than its own (structs only grow at the end, so an older minor is always readable). */
#ifndef LLMC_VERSION_H
#define LLMC_VERSION_H

#include <stddef.h>
#include <stdint.h>

#define LLMC_ABI_VERSION_MAJOR 1
#define LLMC_ABI_VERSION_MINOR 3
#define LLMC_ABI_VERSION_PATCH 0

typedef struct llmc_version {
    uint32_t major;
    uint32_t minor;
    uint32_t patch;
} llmc_version_t;

#define LLMC_ABI_VERSION_INIT { LLMC_ABI_VERSION_MAJOR, LLMC_ABI_VERSION_MINOR, LLMC_ABI_VERSION_PATCH }

/* True when a struct of `struct_size` bytes (as its producer filled it) holds `field`. */
#define LLMC_HAS_FIELD(ptr, type, field) \
    ((ptr) != 0 && (ptr)->struct_size >= (uint32_t)(offsetof(type, field) + sizeof(((type *)0)->field)))

#endif
