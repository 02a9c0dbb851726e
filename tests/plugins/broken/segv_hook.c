/* Broken on purpose: dereferences NULL in on_calibration_start. */
#include "common.h"

static llmc_status_t crash(llmc_modifier_t *self, const llmc_event_t *ev, llmc_error_sink_t *err) {
    (void)self;
    (void)ev;
    (void)err;
    volatile int *p = NULL;
    *p = 1;
    return LLMC_OK;
}

LLMC_EXPORT const llmc_modifier_descriptor_t *llmc_plugin_entry(void) {
    static llmc_modifier_descriptor_t d;
    d = broken_descriptor("BrokenSegvHookModifier");
    d.on_calibration_start = crash;
    return &d;
}
