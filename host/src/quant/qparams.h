// The host's one implementation of quantization numerics (compressed-tensors calculate_qparams,
// quantize, dequantize, fake_quantize; llm-compressor observers). GPTQ, the forward pass and the
// exporter all go through these functions so what is calibrated is what is saved.
//
// Precision follows PyTorch 2.x exactly: arithmetic runs in the promoted dtype of its operands
// (bf16 weights give bf16 scales; each bf16/fp16 op is computed in float32 and rounded), tensor-
// by-Python-scalar ops compute in float32 with the scalar rounded to float32, round is half to
// even, FP8 goes through the E4M3 encoder and FP4 through cast_to_fp4's thresholds.
#pragma once

#include "quant/args.h"

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <utility>

namespace llmc::quant {

struct qparams {
    // Dequantization scale before division by global_scale; a float dtype. FP8 (NVFP4) and E8M0
    // (MX) scales hold their rounded values (store them with fp8_e4m3_encode / e8m0_from_scale).
    at::Tensor scale;
    // zp_dtype values: int8/int16/int32/uint8 tensors, or float32 holding float8 values.
    at::Tensor zero_point;
    // float32 [1] for tensor_group; undefined otherwise.
    at::Tensor global_scale;
};

// (q_min, q_max): INT b bits [-2^(b-1), 2^(b-1)-1], FP8 E4M3 ±448, FP4 E2M1 ±6.
std::pair<double, double> quant_range(const quant_args &args);
// MX scales: float 4/8 bits, group_size 32, scale_dtype uint8.
bool is_mx(const quant_args &args);
// The dtype compressed-tensors registers scales in: the observed dtype when it is a float dtype
// of 16 bits or more, float16 otherwise.
at::ScalarType registered_scale_dtype(at::ScalarType observed);

// NVFP4 generate_gparam: 448 * 6 / max(absmax, float32 tiny) as float32 [1] (non-finite => 1).
// Computed as PyTorch does (reciprocal, then times 2688, in absmax's dtype). An absmax with
// several elements (fused partners) is reduced with max first.
at::Tensor global_scale_for(const at::Tensor &absmax);
at::Tensor global_scale_from_minmax(const at::Tensor &min, const at::Tensor &max);

// calculate_qparams: zero included in the range, symmetric or asymmetric formula (MX exponent
// for MX args), times global_scale, rounded to scale_dtype, zero scales replaced by the scale
// dtype's eps, zero point rounded to zp_dtype, 0-d results reshaped to [1]. args must be
// validated.
qparams qparams_from_minmax(const quant_args &args, at::Tensor min, at::Tensor max,
                            const at::Tensor *global_scale = nullptr);

// --- observers ---

enum class observed_role { weight, activation, attention };

// llm-compressor flatten_for_calibration: (num_observations, *qparam_shape, group_size).
// weight [out, in]: tensor (1,1,N); channel (1,out,1,in); group/tensor_group (1,out,in/g,g)
// (columns first gathered by argsort(g_idx) when g_idx is given and has no -1); block
// (1,rb,cb,bh*bw) over the zero-padded weight. activation [..., hidden]: tensor (tokens,1,hidden);
// token as is; group/tensor_group (tokens,hidden/g,g). attention [batch, heads, seq, head_dim]:
// tensor (batch*seq,1,heads*head_dim); attn_head (batch*seq,heads,1,1,head_dim).
at::Tensor flatten_for_calibration(const quant_args &args, const at::Tensor &x, observed_role role,
                                   const at::Tensor *g_idx = nullptr);

// Options of the MSE grid search (observer_kwargs), llm-compressor defaults.
struct mse_options {
    double maxshrink = 0.20;
    int patience = 5;
    double grid = 100.0;
    double norm = 2.4;
    double expand = 1.0;
    // imatrix_mse's grid: candidates i = 0 ..= max(1, int(maxshrink * grid)) (one more than
    // memoryless_mse's), errors summed in float32, patience 0 meaning no early stop.
    bool imatrix_grid = false;
};

// Grid search over shrink factors p = 1 - i/grid, i < int(maxshrink*grid), of the (expanded)
// observed range, keeping per qparam the range with the strictly smallest sum |fq(x) - x|^norm;
// stops after `patience` steps that improve nothing. `flat` is a flatten_for_calibration output.
// Returns (min, max) of shape qparam_shape. For tensor_group the search drops scale_dtype and
// the global scale.
// `importance` (imatrix_mse) has flat's shape and weighs each element's error.
std::pair<at::Tensor, at::Tensor> mse_min_max(const quant_args &args, const at::Tensor &flat,
                                              const mse_options &opts, const at::Tensor *importance = nullptr);

// One observed value's statistics over calibration batches. Kinds (args.observer):
// memoryless_minmax (latest batch), static_minmax (running min of mins / max of maxes), minmax
// (EMA, averaging_constant 0.01), memoryless_mse, mse (MSE + EMA), nvfp4_expanded_mse,
// imatrix_mse (weights: MSE weighted by the mean x² of each input channel, fed by
// observe_input). For weights minmax/static_minmax run as memoryless_minmax and mse as
// memoryless_mse.
// tensor_group observers also track the tensor-wide range for the global scale.
class observer {
  public:
    // How ranks combine statistics (c10d all-reduce): none for memoryless kinds, elementwise
    // MIN/MAX for static_minmax, AVG for the moving averages.
    enum class reduction { none, min_max, mean };

    explicit observer(const quant_args &args, observed_role role = observed_role::weight);

    const quant_args &args() const { return args_; }
    // The kind actually run (after the weight replacements).
    const std::string &kind() const { return kind_; }
    reduction reduce_op() const;

    void observe(const at::Tensor &x, const at::Tensor *g_idx = nullptr);
    // imatrix_mse: folds a batch of the module's inputs [..., in] into Σ x² per input channel
    // (float32) and the token count. Other kinds ignore it.
    void observe_input(const at::Tensor &x);
    // The normalized importance observe() would use for a weight of `in` columns, or undefined
    // after a fallback to uniform MSE (the reason in *why; strict=True makes it an error).
    at::Tensor importance(int64_t in, std::string *why = nullptr) const;
    bool has_stats() const { return min_.defined(); }
    // global_scale overrides the observer's own (a fused group's shared one).
    qparams get_qparams(const at::Tensor *global_scale = nullptr) const;
    // tensor_group: generate_gparam over the tracked tensor-wide range.
    at::Tensor global_scale() const;

    const at::Tensor &min_vals() const { return min_; }
    const at::Tensor &max_vals() const { return max_; }
    const at::Tensor &global_min_vals() const { return gmin_; }
    const at::Tensor &global_max_vals() const { return gmax_; }
    // Replaces the statistics (after a distributed reduction).
    void set_stats(at::Tensor min, at::Tensor max, at::Tensor global_min = {},
                   at::Tensor global_max = {});
    void reset();

  private:
    void fold(at::Tensor &min_acc, at::Tensor &max_acc, const at::Tensor &min,
              const at::Tensor &max) const;

    quant_args args_;
    observed_role role_;
    std::string kind_;
    bool mse_ = false;
    enum class memory { none, running, moving } memory_ = memory::none;
    double averaging_constant_ = 0.01;
    mse_options mse_opts_;
    bool imatrix_ = false, strict_ = false;
    at::Tensor imatrix_sum_; // float32 [in]
    int64_t imatrix_count_ = 0;
    at::Tensor min_, max_, gmin_, gmax_;
};

// One observation through a fresh observer, as a weight's qparams are computed: the scale comes
// back in registered_scale_dtype(x's dtype). For tensor_group the global scale is `global_scale`
// when given, else computed from x. Fully dynamic args give qparams_dynamic(x); "local" args a
// calibrated (or given) global scale with qparams_dynamic's local scales.
qparams qparams_observe(const quant_args &args, const at::Tensor &x,
                        observed_role role = observed_role::weight,
                        const at::Tensor *global_scale = nullptr, const at::Tensor *g_idx = nullptr);

// compute_dynamic_scales_and_zp, for dynamic (and "local") activations: token => per row of the
// last dim ([..., 1]); tensor => [1]; group/tensor_group => [..., hidden/g].
qparams qparams_dynamic(const quant_args &args, const at::Tensor &x,
                        const at::Tensor *global_scale = nullptr);

// --- quantize / dequantize ---

// Storage form: INT => int8 (int16/int32 above 8 bits) in [q_min, q_max]; FP8 => uint8 E4M3
// codes; FP4 => uint8 E2M1 codes (unpacked, 0..15). Same shape as x; group layouts handle g_idx,
// block layouts pad and crop.
at::Tensor quantize(const quant_args &args, const at::Tensor &x, const qparams &qp,
                    const at::Tensor *g_idx = nullptr);
// Accepts the storage form (or quantized values in a float dtype); result in `dtype`, default
// the scale's dtype.
at::Tensor dequantize(const quant_args &args, const at::Tensor &q, const qparams &qp,
                      const at::Tensor *g_idx = nullptr,
                      std::optional<at::ScalarType> dtype = std::nullopt);
// dequantize(quantize(x)) with compressed-tensors' exact arithmetic. Result dtype as the
// reference: x's for group/tensor_group, otherwise the computation's (the wider of x and scale).
at::Tensor fake_quantize(const quant_args &args, const at::Tensor &x, const qparams &qp,
                         const at::Tensor *g_idx = nullptr);
// qparams_dynamic then fake_quantize: what the forward pass does to dynamic activations.
at::Tensor fake_quantize_dynamic(const quant_args &args, const at::Tensor &x,
                                 const at::Tensor *global_scale = nullptr);

} // namespace llmc::quant
