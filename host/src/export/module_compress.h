// One module's tensors in their compressed-tensors form (reference section 6.2): the weight
// quantized and packed as its format says, qparams in their stored dtypes, symmetric zero points
// and dynamic activations' qparams dropped.
#pragma once

#include "model/causal_lm.h"
#include "quant/args.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llmc::exporter {

// Fused fast paths (quantize and pack in one pass) are on by default and write the same bytes as
// the generic path; tests switch them off to compare the two.
void set_fast_paths(bool on);
bool fast_paths_enabled();
// How many weights the fused path wrote (so tests know it ran).
uint64_t fast_paths_used();

// Qparam buffer names compressed-tensors registers: "<base>_scale", "_zero_point",
// "_global_scale", "_g_idx" for base weight/input/output, plus the attention's q/k/v scales.
bool is_qparam_name(const std::string &local_name);

// `tensors` are the module's own parameters and buffers by local name ("weight", "bias",
// "weight_scale", ...); the result has local names too. The weight's qparams are the stored
// buffers when the module has them (a GPTQ weight is already on their grid; an RTN weight is
// rounded here), else computed with qparams_observe (`global_scale`, when given, is the shared
// global scale of NVFP4 fused partners). Static activation scales must have been calibrated.
// `format` is the module's compression format (dense returns the tensors unchanged); scales are
// written in model_dtype unless the scheme or format says otherwise. `weight_error`, when given,
// receives mean((fake_quantize(weight) - weight)²) over the weight as held: what saving rounded
// away (an RTN weight's rounding error; about 0 for a weight GPTQ already put on its grid).
std::vector<saved_tensor> compress_module(const std::string &module_name, const quant::quant_scheme &scheme,
                                          const std::string &format, const std::vector<saved_tensor> &tensors,
                                          at::ScalarType model_dtype, const at::Tensor *global_scale = nullptr,
                                          double *weight_error = nullptr);

// An attention module under a kv-cache scheme: k_scale / v_scale (and q_scale) in the model dtype
// (or scale_dtype), zero points only when asymmetric.
std::vector<saved_tensor> compress_kv_cache(const std::string &module_name, const quant::quant_args &kv,
                                            const std::vector<saved_tensor> &tensors, at::ScalarType model_dtype);

} // namespace llmc::exporter
