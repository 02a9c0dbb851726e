/* Broken on purpose: built for ABI major 99. */
#include "common.h"

LLMC_EXPORT const llmc_modifier_descriptor_t *llmc_plugin_entry(void) {
    static llmc_modifier_descriptor_t d;
    d = broken_descriptor("BrokenAbiMajorModifier");
    d.abi_version.major = 99;
    return &d;
}
