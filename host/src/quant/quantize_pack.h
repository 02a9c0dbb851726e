// quantize() then pack_int32() in one parallel pass: what the exporter writes for INT
// pack-quantized weights, without the int8 / int32 temporaries and their passes over memory; and
// quantize() of INT, FP8 and FP4 weights straight to the codes the other formats store.
#pragma once

#include "quant/args.h"
#include "quant/qparams.h"

#include <ATen/ATen.h>

#include <functional>

namespace llmc::quant {

// Reads rows [r0, r1) of a weight into dst (their bytes, contiguous) and returns true, or returns
// false to have them read from the weight's memory. It lets the exporter take an unmodified
// weight's bytes from its file rather than through the mapping (io/file_regions.h).
using row_reader = std::function<bool(int64_t r0, int64_t r1, void *dst)>;

// pack_int32(quantize(args, weight, qp), num_bits, 1), bit for bit, when: INT args of 1..8 bits;
// strategy tensor, channel or group (qparams [1], [rows, 1] or [rows, cols / group]); no g_idx and
// no global scale; a 2-D float weight. An undefined tensor when the call is not of that form or a
// quotient is NaN (the generic path decides what that means). With `mean_squared_error`, also
// mean((fake_quantize(weight) - weight)²) in the same pass (set only when the packing succeeded).
// With `read` (and no g_idx), rows go in cache-sized blocks read through it.
at::Tensor quantize_pack_int32(const quant_args &args, const at::Tensor &weight, const qparams &qp,
                               const at::Tensor *g_idx = nullptr, double *mean_squared_error = nullptr,
                               const row_reader &read = {});

// qparams_observe(args, weight) then quantize_pack_int32 with them, in blocks of rows that stay
// in cache between the two: one pass over the weight's memory instead of two. Only where a block
// of rows observes exactly as the whole weight does: INT args of 1..8 bits, static, strategy
// channel, group without activation-order groups, or block (in whole bands of its rows; its width
// dividing the columns), a memoryless min/max observer (the MSE search stops when no group of the
// whole tensor improves, so it is not blockwise). On success `qp` gets the qparams
// qparams_observe gives; otherwise an undefined tensor and `qp` is left alone.
at::Tensor observe_quantize_pack_int32(const quant_args &args, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error = nullptr, const row_reader &read = {});

// quantize(args, weight, qp) of an INT weight of 1..8 bits, bit for bit: the int8 [rows, cols] the
// int-quantized and naive-quantized formats store, in one pass. The conditions, the error and
// `read` as quantize_pack_int32's (without g_idx).
at::Tensor quantize_int8_codes(const quant_args &args, const at::Tensor &weight, const qparams &qp,
                               double *mean_squared_error = nullptr, const row_reader &read = {});

// qparams_observe then quantize_int8_codes in blocks of rows, as observe_quantize_pack_int32.
at::Tensor observe_quantize_int8_codes(const quant_args &args, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error = nullptr, const row_reader &read = {});

// quantize(args, weight, qp) of an FP8 E4M3 weight (float, 8 bits, MX too), bit for bit: the
// uint8 codes the float- and mxfp8-quantized formats store, in one pass instead of a chain of ATen
// ops. Strategy tensor, channel, group, or block where the block's width divides the columns; no
// g_idx or global scale; undefined when the call is not of that form or a quotient is NaN. With
// `mean_squared_error`, fake_quantize's error in the same pass; with `read`, rows through it.
at::Tensor quantize_fp8_codes(const quant_args &args, const at::Tensor &weight, const qparams &qp,
                              double *mean_squared_error = nullptr, const row_reader &read = {});

// qparams_observe then quantize_fp8_codes in blocks of rows, as observe_quantize_pack_int32 (the
// same conditions on strategy and observer).
at::Tensor observe_quantize_fp8_codes(const quant_args &args, const at::Tensor &weight, qparams &qp,
                                      double *mean_squared_error = nullptr, const row_reader &read = {});

// pack_fp4(quantize(args, weight, qp)) of an FP4 E2M1 weight (NVFP4, MXFP4: strategy group or
// tensor_group, even groups), bit for bit: the uint8 [rows, cols / 2] the fp4 pack formats store,
// in one pass. Undefined when the call is not of that form or a quotient is NaN. With
// `mean_squared_error`, fake_quantize's error in the same pass; with `read`, rows through it.
at::Tensor quantize_fp4_packed(const quant_args &args, const at::Tensor &weight, const qparams &qp,
                               double *mean_squared_error = nullptr, const row_reader &read = {});

// qparams_observe then quantize_fp4_packed in blocks of rows, as observe_quantize_pack_int32: FP4
// weights of strategy group (MXFP4; NVFP4's tensor_group shares a global scale, so it declines).
at::Tensor observe_quantize_fp4_packed(const quant_args &args, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error = nullptr, const row_reader &read = {});

} // namespace llmc::quant
