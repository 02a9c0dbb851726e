/* Shared by the deliberately broken C plugins: a minimal valid descriptor they then break. */
#ifndef LLMC_TEST_BROKEN_COMMON_H
#define LLMC_TEST_BROKEN_COMMON_H

#include <llmc/llmc.h>

#include <stdlib.h>

static llmc_status_t broken_create(const llmc_host_t *host, const char *params, llmc_modifier_t **out,
                                   llmc_error_sink_t *err) {
    (void)host;
    (void)params;
    (void)err;
    *out = (llmc_modifier_t *)malloc(1);
    return LLMC_OK;
}
static void broken_destroy(llmc_modifier_t *self) { free(self); }
static llmc_status_t broken_initialize(llmc_modifier_t *self, llmc_error_sink_t *err) {
    (void)self;
    (void)err;
    return LLMC_OK;
}

static llmc_modifier_descriptor_t broken_descriptor(const char *name) {
    llmc_modifier_descriptor_t d = {0};
    d.struct_size = sizeof(d);
    d.abi_version.major = LLMC_ABI_VERSION_MAJOR;
    d.abi_version.minor = LLMC_ABI_VERSION_MINOR;
    d.name = name;
    d.version = "0.0.1";
    d.description = "deliberately broken test plugin";
    d.params_json = "[]";
    d.create = broken_create;
    d.destroy = broken_destroy;
    d.on_initialize = broken_initialize;
    return d;
}

#endif
