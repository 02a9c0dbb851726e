// Broken on purpose: create lets a C++ exception escape through the C ABI (no SDK barrier).
#include "common.h"

#include <stdexcept>

static llmc_status_t throwing_create(const llmc_host_t *, const char *, llmc_modifier_t **, llmc_error_sink_t *) {
    throw std::runtime_error("thrown across the C ABI");
}

extern "C" LLMC_EXPORT const llmc_modifier_descriptor_t *llmc_plugin_entry(void) {
    static llmc_modifier_descriptor_t d;
    d = broken_descriptor("BrokenThrowsCreateModifier");
    d.create = throwing_create;
    return &d;
}
