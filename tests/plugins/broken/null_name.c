/* Broken on purpose: the descriptor's name is NULL. */
#include "common.h"

LLMC_EXPORT const llmc_modifier_descriptor_t *llmc_plugin_entry(void) {
    static llmc_modifier_descriptor_t d;
    d = broken_descriptor(NULL);
    return &d;
}
