/* Events are data: a type plus the indices llm-compressor's Event carries. New types may be
 * added in any minor version; plugins must ignore types they do not know. */
#ifndef LLMC_EVENT_H
#define LLMC_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* Values match the order of llm-compressor's EventType enum. */
typedef enum llmc_event_type {
    LLMC_EVENT_INITIALIZE = 1,
    LLMC_EVENT_FINALIZE = 2,
    LLMC_EVENT_BATCH_START = 3,
    LLMC_EVENT_LOSS_CALCULATED = 4,
    LLMC_EVENT_BATCH_END = 5,
    LLMC_EVENT_CALIBRATION_START = 6,
    LLMC_EVENT_SEQUENTIAL_EPOCH_END = 7,
    LLMC_EVENT_CALIBRATION_END = 8,
    LLMC_EVENT_OPTIM_PRE_STEP = 9,
    LLMC_EVENT_OPTIM_POST_STEP = 10
} llmc_event_type_t;

/* Ownership: host-owned; valid only for the duration of the callback it is passed to. */
typedef struct llmc_event {
    uint32_t struct_size;
    uint32_t type; /* llmc_event_type_t, or a newer value the plugin must ignore */
    /* llm-compressor's Event fields; current_index is global_step / steps_per_epoch
     * (global_step itself when steps_per_epoch is 0). Oneshot runs use index 0. */
    int64_t steps_per_epoch;
    int64_t batches_per_step;
    int64_t invocations_per_step;
    int64_t global_step;
    int64_t global_batch;
    double current_index;
    /* SEQUENTIAL_EPOCH_END: the subgraph's modules (Hugging Face names, de-duplicated, in
     * model order); the whole model for basic and datafree pipelines. Else NULL and 0. */
    const char *const *module_names;
    size_t module_count;
    /* Which subgraph of how many (sequential pipeline); 0 of 1 otherwise. */
    uint32_t subgraph_index;
    uint32_t subgraph_count;
    /* LOSS_CALCULATED: the loss value of the step; 0 otherwise. */
    double loss;
} llmc_event_t;

#endif
