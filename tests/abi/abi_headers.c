/* Compiled as C11 with -Wall -Wextra -pedantic -Werror; freezes the v1.0 layout: a change here
 * means the ABI changed (a new field goes at the end and bumps the minor version). */
#include <llmc/llmc.h>

#include <stddef.h>

#define FROZEN(type, field, off) _Static_assert(offsetof(type, field) == (off), #type "." #field " moved")

FROZEN(llmc_version_t, minor, 4);
FROZEN(llmc_error_sink_t, set, 16);
FROZEN(llmc_event_t, steps_per_epoch, 8);
FROZEN(llmc_event_t, current_index, 48);
FROZEN(llmc_event_t, module_names, 56);
FROZEN(llmc_event_t, loss, 80);
FROZEN(llmc_modifier_descriptor_t, abi_version, 4);
FROZEN(llmc_modifier_descriptor_t, name, 16);
FROZEN(llmc_modifier_descriptor_t, create, 56);
FROZEN(llmc_modifier_descriptor_t, on_calibration_end, 144);
FROZEN(llmc_host_t, host_data, 16);
FROZEN(llmc_host_t, log, 40);
FROZEN(llmc_host_t, replay, 88);
FROZEN(llmc_model_api_t, hook_remove, 80);
FROZEN(llmc_quant_api_t, quantization_enable, 48);
FROZEN(llmc_quant_api_t, observer_destroy, 80);
FROZEN(llmc_quant_api_t, observer_observe_input, 88); /* 1.1 */
FROZEN(llmc_quant_api_t, weight_qparams_defer, 96); /* 1.2 */
FROZEN(llmc_quant_api_t, weight_qparams_store, 104); /* 1.3 */
FROZEN(llmc_replay_api_t, replay_batch_count, 24);
_Static_assert(sizeof(llmc_modifier_descriptor_t) == 152, "descriptor size changed");
FROZEN(llmc_host_t, report, 96);
_Static_assert(sizeof(llmc_host_t) == 104, "host table size changed");

int llmc_abi_headers_c11(void) { return LLMC_ABI_VERSION_MAJOR; }
