/* Host services: the table a plugin receives when the host creates a modifier instance.
 *
 * Conventions for every function here:
 * - Tags: [thread-safe] may be called from any thread; [host-thread] only from the thread that
 *   is running one of the plugin's callbacks (the host calls plugins from one thread).
 * - Strings and arrays passed in are borrowed for the call; the host copies what it keeps.
 * - Strings returned by the host are host-owned and valid as long as the call says.
 * - DLManagedTensor results are owned by the receiver, who calls `deleter` exactly once, from
 *   any thread. Borrowed `const DLTensor *` are valid for the call only.
 * - Every fallible call returns llmc_status_t and describes failures through `err` (may be
 *   NULL when the caller does not want the message).
 * - Tables only grow at the end; check `struct_size` (LLMC_HAS_FIELD) before using a field
 *   newer than the minor version you require. */
#ifndef LLMC_HOST_H
#define LLMC_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "event.h"
#include "status.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmc_host llmc_host_t;

typedef enum llmc_log_level {
    LLMC_LOG_TRACE = 0,
    LLMC_LOG_DEBUG = 1,
    LLMC_LOG_INFO = 2,
    LLMC_LOG_WARN = 3,
    LLMC_LOG_ERROR = 4,
    LLMC_LOG_FATAL = 5,
    LLMC_LOG_HOST_MISBEHAVING = 6,
    LLMC_LOG_PLUGIN_MISBEHAVING = 7
} llmc_log_level_t;

/* ---- model view ------------------------------------------------------------------------ */

/* One module of the model. Strings are host-owned and valid until the instance is destroyed. */
typedef struct llmc_module_info {
    uint32_t struct_size;
    const char *name;       /* Hugging Face name, "model.layers.3.self_attn.q_proj"; "" = root */
    const char *class_name; /* "Linear", "LlamaDecoderLayer", ... */
    int64_t parent;         /* index of the parent module, -1 for the root */
    int64_t layer;          /* index of the decoder layer it belongs to, -1 if none */
} llmc_module_info_t;

typedef enum llmc_tensor_kind {
    LLMC_TENSOR_PARAMETER = 1, /* "weight", "bias": exist from the checkpoint, never created */
    LLMC_TENSOR_BUFFER = 2     /* named buffers ("weight_scale", masks, ...) a plugin may add */
} llmc_tensor_kind_t;

/* Visitors return LLMC_OK to go on; any other status stops the walk and is returned. */
typedef llmc_status_t (*llmc_module_visit_fn)(void *user_data, size_t module_index, const char *module_name);
typedef llmc_status_t (*llmc_name_visit_fn)(void *user_data, const char *name);

typedef enum llmc_hook_kind {
    LLMC_HOOK_FORWARD_PRE = 1, /* before forward: inputs only */
    LLMC_HOOK_FORWARD = 2      /* after forward: inputs and output */
} llmc_hook_kind_t;

/* What a hook sees. Host-owned; the tensors are borrowed views valid for the call only and
 * must not be written (copy what you keep). */
typedef struct llmc_hook_call {
    uint32_t struct_size;
    uint32_t kind; /* llmc_hook_kind_t */
    const char *module_name;
    size_t module_index;
    const DLTensor *const *inputs; /* the module's positional inputs; inputs[0] is the activation */
    size_t input_count;
    const DLTensor *output; /* NULL for FORWARD_PRE */
} llmc_hook_call_t;

/* A hook returning non-OK aborts the forward pass; the run fails with the hook's message. */
typedef llmc_status_t (*llmc_hook_fn)(void *user_data, const llmc_hook_call_t *call, llmc_error_sink_t *err);

typedef struct llmc_model_api {
    uint32_t struct_size;

    /* Number of modules, in torch's named_modules() order (the root first). [host-thread] */
    size_t (*module_count)(const llmc_host_t *host);
    /* Fills `out` (set out->struct_size first) for module `index`. [host-thread] */
    llmc_status_t (*module_info)(const llmc_host_t *host, size_t index, llmc_module_info_t *out,
                                 llmc_error_sink_t *err);
    /* Index of the module named `name`; LLMC_ERR_NOT_FOUND if none. [host-thread] */
    llmc_status_t (*module_find)(const llmc_host_t *host, const char *name, size_t *index,
                                 llmc_error_sink_t *err);
    /* Visits, in model order, every module matched by `targets` and not by `ignore`, with
     * llm-compressor's semantics: an entry matches a module when it equals its class name or
     * its full name, or, prefixed "re:", when the regular expression matches the full name
     * from its start (Python re.match). A module matched by ignore is skipped. [host-thread] */
    llmc_status_t (*module_match)(const llmc_host_t *host, const char *const *targets, size_t target_count,
                                  const char *const *ignore, size_t ignore_count, llmc_module_visit_fn visit,
                                  void *user_data, llmc_error_sink_t *err);

    /* Visits the names of a module's own parameters or buffers. [host-thread] */
    llmc_status_t (*tensor_names)(const llmc_host_t *host, const char *module, uint32_t kind,
                                  llmc_name_visit_fn visit, void *user_data, llmc_error_sink_t *err);
    /* A zero-copy view of a parameter or buffer (parameters are looked up first). The receiver
     * owns *out and calls its deleter once. Writing through the view changes the model: allowed
     * only inside the plugin's own callbacks, same shape and dtype. Views of a layer's weights
     * stay valid after the layer is released, but then no longer alias the model. [host-thread] */
    llmc_status_t (*tensor_get)(const llmc_host_t *host, const char *module, const char *name,
                                DLManagedTensor **out, llmc_error_sink_t *err);
    /* Copies `value` into the module. A parameter keeps its shape (must match) and dtype (value is
     * converted). Any other name is stored as a named buffer with value's shape and dtype,
     * replacing a buffer of that name; buffers are saved with the checkpoint. [host-thread] */
    llmc_status_t (*tensor_set)(const llmc_host_t *host, const char *module, const char *name,
                                const DLTensor *value, llmc_error_sink_t *err);
    /* Removes a named buffer. Parameters cannot be removed. [host-thread] */
    llmc_status_t (*tensor_remove)(const llmc_host_t *host, const char *module, const char *name,
                                   llmc_error_sink_t *err);

    /* Adds a forward hook (HooksMixin semantics): it runs during calibration passes and not during
     * propagation passes, and the host removes it when this instance finalizes. *id identifies it
     * for hook_remove. `user_data` is the plugin's; the host never touches it. [host-thread] */
    llmc_status_t (*hook_add)(const llmc_host_t *host, const char *module, uint32_t kind, llmc_hook_fn fn,
                              void *user_data, uint64_t *id, llmc_error_sink_t *err);
    llmc_status_t (*hook_remove)(const llmc_host_t *host, uint64_t id, llmc_error_sink_t *err);
} llmc_model_api_t;

/* ---- quantization: the host's one implementation of the numerics ---------------------- */

/* Quantization args and schemes cross as JSON with compressed-tensors' field names
 * (QuantizationArgs: num_bits, type, symmetric, group_size, strategy, block_structure, dynamic,
 * actorder, scale_dtype, zp_dtype, observer, observer_kwargs; QuantizationScheme: targets,
 * weights, input_activations, output_activations, format). */
typedef llmc_status_t (*llmc_string_fn)(void *user_data, const char *text);

/* A stateful observer (llm-compressor's observers: memoryless_minmax, static_minmax, minmax,
 * memoryless_mse, mse, ...): host-owned state behind an opaque handle. */
typedef struct llmc_observer llmc_observer_t;

typedef enum llmc_observed_role {
    LLMC_OBSERVE_WEIGHT = 1,    /* [out, in] weights */
    LLMC_OBSERVE_ACTIVATION = 2 /* [..., hidden] activations */
} llmc_observed_role_t;

typedef struct llmc_quant_api {
    uint32_t struct_size;

    /* Resolves a preset name ("W4A16", case-insensitive) or a scheme mapping to the canonical
     * scheme JSON with every default filled in, passed to `out`. [thread-safe] */
    llmc_status_t (*scheme_resolve)(const llmc_host_t *host, const char *preset_or_scheme_json,
                                    llmc_string_fn out, void *user_data, llmc_error_sink_t *err);
    /* Attaches a scheme to a module: forward passes fake-quantize its weights and activations once
     * quantization is enabled, and the exporter writes it in that format. [host-thread] */
    llmc_status_t (*scheme_attach)(const llmc_host_t *host, const char *module, const char *scheme_json,
                                   llmc_error_sink_t *err);
    /* The canonical scheme JSON attached to a module; LLMC_ERR_NOT_FOUND if none. [host-thread] */
    llmc_status_t (*scheme_get)(const llmc_host_t *host, const char *module, llmc_string_fn out,
                                void *user_data, llmc_error_sink_t *err);
    /* Scale and zero point of `x` under `args_json` with its strategy and observer (weights are
     * [out, in]). The receiver owns both results; zero_point may be NULL when not wanted.
     * [thread-safe] */
    llmc_status_t (*qparams_compute)(const llmc_host_t *host, const char *args_json, const DLTensor *x,
                                     DLManagedTensor **scale, DLManagedTensor **zero_point,
                                     llmc_error_sink_t *err);
    /* quantize-dequantize of `x` with the given qparams (zero_point and g_idx may be NULL).
     * The result has x's shape and dtype; the receiver owns it. [thread-safe] */
    llmc_status_t (*fake_quantize)(const llmc_host_t *host, const char *args_json, const DLTensor *x,
                                   const DLTensor *scale, const DLTensor *zero_point, const DLTensor *g_idx,
                                   DLManagedTensor **out, llmc_error_sink_t *err);
    /* Turns fake-quantization on or off for the modules this instance attached schemes to
     * (llm-compressor enables it at CALIBRATION_END): their forward passes then compute with the
     * quantized weights and activations, using the qparam buffers stored on them. [host-thread] */
    llmc_status_t (*quantization_enable)(const llmc_host_t *host, int enabled, llmc_error_sink_t *err);

    /* Creates an observer for `args_json` (its `observer` field, or the default for the args) and
     * `role` (llmc_observed_role_t). The caller owns *out and frees it with observer_destroy.
     * [thread-safe; one observer is not shared between threads] */
    llmc_status_t (*observer_create)(const llmc_host_t *host, const char *args_json, uint32_t role,
                                     llmc_observer_t **out, llmc_error_sink_t *err);
    /* Folds one observation (a calibration batch) into the observer's statistics. */
    llmc_status_t (*observer_observe)(const llmc_host_t *host, llmc_observer_t *observer, const DLTensor *x,
                                      llmc_error_sink_t *err);
    /* The qparams of what was observed so far. The receiver owns the results; zero_point and
     * global_scale may be NULL when not wanted, and are set to NULL when the args have none.
     * LLMC_ERR_BAD_STATE before any observation. */
    llmc_status_t (*observer_qparams)(const llmc_host_t *host, llmc_observer_t *observer, DLManagedTensor **scale,
                                      DLManagedTensor **zero_point, DLManagedTensor **global_scale,
                                      llmc_error_sink_t *err);
    void (*observer_destroy)(const llmc_host_t *host, llmc_observer_t *observer);

    /* ---- since ABI 1.1 (check with LLMC_HAS_FIELD(host->quant, llmc_quant_api_t, ...)) ---- */

    /* Folds one batch of the observed module's input activations ([..., in_features], borrowed
     * for the call) into an imatrix_mse weight observer: per input channel Σ x² in float32 and
     * the token count, whose mean (normalized to mean 1) weighs the weight's rounding error.
     * Other observer kinds ignore it and return LLMC_OK. [thread-safe for distinct observers] */
    llmc_status_t (*observer_observe_input)(const llmc_host_t *host, llmc_observer_t *observer, const DLTensor *x,
                                            llmc_error_sink_t *err);

    /* ---- since ABI 1.2 (check with LLMC_HAS_FIELD(host->quant, llmc_quant_api_t, weight_qparams_defer)) ---- */

    /* Leaves the weight qparams of `module` to the host instead of observing and storing them
     * now: under the weights args of its attached scheme, with a fresh observer of those args (what
     * observer_create + observer_observe + observer_qparams give on the weight as it is now). The
     * host computes them when first needed: the exporter in the pass that packs the weight (one
     * read of it instead of two), a fake-quantized forward, or, before any plugin next lists,
     * gets, sets or removes one of the module's tensors, attaches a scheme to it or replays it (or
     * a module containing it) with overrides, by storing `weight_scale` (in the weight's dtype)
     * and, for asymmetric args, `weight_zero_point`, exactly as observing and storing them now
     * would have. Stored weight qparams are dropped.
     * Writing the weight through a view taken before this call is not allowed. NOT_FOUND when
     * the module has no scheme; UNSUPPORTED when its weights cannot be left to the host (no or
     * dynamic weights, strategy tensor_group: partners share one global scale, observer
     * imatrix_mse: it needs the inputs), and then the plugin observes them itself. [host-thread] */
    llmc_status_t (*weight_qparams_defer)(const llmc_host_t *host, const char *module, llmc_error_sink_t *err);

    /* ---- since ABI 1.3 (check with LLMC_HAS_FIELD(host->quant, llmc_quant_api_t, weight_qparams_store)) ---- */

    /* Observes the weights of `modules` (`count` >= 1 names, borrowed for the call) and stores
     * their qparams now, exactly as a fresh observer of the weights args of their attached scheme
     * (observer_create + observer_observe + observer_qparams), given the weights' rows
     * concatenated, then tensor_set of each module's rows would: `weight_scale` in the weight's
     * dtype, `weight_zero_point` for asymmetric args, and `weight_global_scale` passed through
     * the weight's dtype to float32 (as llm-compressor's parameter holds it). Several modules are
     * one tensor_group partner set (q/k/v, gate/up), which shares one global scale: all must have
     * equal tensor_group weights args. The host reads each weight once, from its checkpoint file
     * where it can, without the concatenated copy. NOT_FOUND when a module has no scheme;
     * INVALID_ARG for several modules whose args differ or are not tensor_group; UNSUPPORTED when
     * the weights cannot be observed by the host alone (no or dynamic weights, observer
     * imatrix_mse: it needs the inputs), and then the plugin observes them itself.
     * [host-thread] */
    llmc_status_t (*weight_qparams_store)(const llmc_host_t *host, const char *const *modules, size_t count,
                                          llmc_error_sink_t *err);
} llmc_quant_api_t;

/* ---- replay: re-run a module of the current layer on its cached calibration inputs -------- */

typedef struct llmc_named_tensor {
    const char *name; /* "weight", "bias", ... */
    const DLTensor *tensor;
} llmc_named_tensor_t;

/* Receives the module's output for one cached batch (borrowed, valid for the call). */
typedef llmc_status_t (*llmc_replay_fn)(void *user_data, size_t batch_index, const DLTensor *output,
                                        llmc_error_sink_t *err);

typedef struct llmc_replay_api {
    uint32_t struct_size;

    /* Asks the host to keep the inputs `module` receives during each layer's calibration pass,
     * so that replay_run can re-run it. Call from on_initialize or on_calibration_start.
     * [host-thread] */
    llmc_status_t (*replay_capture)(const llmc_host_t *host, const char *module, llmc_error_sink_t *err);
    /* Re-runs `module` (hooks off) on every cached batch of the current layer, with parameters
     * temporarily replaced by `overrides` (restored afterwards), and passes each output to `fn`.
     * An override names a parameter of the module ("weight") or of a module inside it, by the
     * path relative to it ("q_proj.weight" when replaying a self_attn).
     * Only during SEQUENTIAL_EPOCH_END of the layer the module belongs to; else
     * LLMC_ERR_UNAVAILABLE. [host-thread] */
    llmc_status_t (*replay_run)(const llmc_host_t *host, const char *module, const llmc_named_tensor_t *overrides,
                                size_t override_count, llmc_replay_fn fn, void *user_data,
                                llmc_error_sink_t *err);
    /* Number of batches cached for the current layer. [host-thread] */
    size_t (*replay_batch_count)(const llmc_host_t *host);
} llmc_replay_api_t;

/* ---- the host table ---------------------------------------------------------------------- */

/* One table per modifier instance: `host_data` tells the host which instance calls (so hooks and
 * schemes are owned by that instance). Host-owned; valid from create until destroy returns. */
struct llmc_host {
    uint32_t struct_size;
    llmc_version_t abi_version;
    void *host_data; /* host-owned: plugins never read or write it */
    const char *name;
    const char *version;

    /* Logs one line. Never call from a signal handler. [thread-safe] */
    void (*log)(const llmc_host_t *host, int32_t level, const char *message);
    /* Non-zero once the user asked to stop; long loops should check it and return
     * LLMC_ERR_CANCELLED. [thread-safe] */
    int (*is_cancelled)(const llmc_host_t *host);
    /* Progress of a long step: `done` of `total` units of `label`. [host-thread] */
    void (*progress)(const llmc_host_t *host, const char *label, uint64_t done, uint64_t total);
    /* An optional extension by id ("vendor.name/REV"), or NULL. [thread-safe] */
    const void *(*get_extension)(const llmc_host_t *host, const char *id);

    const llmc_model_api_t *model;
    const llmc_quant_api_t *quant;
    const llmc_replay_api_t *replay;

    /* Records a per-module figure for the run report ("loss", "time_s", "sparsity", ...); a later
     * value for the same module and key replaces the earlier one. [host-thread] */
    void (*report)(const llmc_host_t *host, const char *module, const char *key, double value);
};

#ifdef __cplusplus
}
#endif

#endif
