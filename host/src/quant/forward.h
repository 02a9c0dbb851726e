// Fake-quantization in the forward pass: once a modifier enables quantization (llm-compressor does
// at CALIBRATION_END), a module with a scheme computes with what the saved model will compute.
#pragma once

#include "model/module.h"
#include "quant/args.h"

namespace llmc::quant {

// Turns fake-quantization of `m` (a Linear) on with `scheme`, or off with nullptr. Weights use the
// module's qparam buffers in compressed-tensors names (weight_scale, weight_zero_point,
// weight_global_scale, weight_g_idx) when present, else qparams observed from the weight; input
// activations are fake-quantized dynamically, or with input_scale / input_zero_point /
// input_global_scale when static; output activations likewise with output_*.
void forward_quantization_set(module &m, const quant_scheme *scheme);

// Turns fake-quantization of an attention module's kv cache on with `kv` (keys after rotary,
// values; static scales from the module's k_scale / v_scale buffers), or off with nullptr.
void forward_kv_quantization_set(module &m, const quant_args *kv);

} // namespace llmc::quant
