// A scalar fast path of fake_quantize for its most frequent calls: GPTQ rounds one weight column
// at a time (thousands of calls per Linear), where ATen's per-op overhead costs far more than the
// arithmetic, and whole grouped weights (error figures, the forward pass), where a chain of ATen
// ops makes a pass over memory each. Same numerics as the generic path in qparams.cpp, bit for
// bit (a NaN result is NaN on both, though ATen's own bf16 NaN bits depend on which of its
// kernels runs).
#pragma once

#include "quant/args.h"
#include "quant/qparams.h"

#include <ATen/ATen.h>

namespace llmc::quant {

// fake_quantize(args, x, qp) when: INT args; no global scale; and either
//   - strategy tensor, channel or token (qparams broadcast against x); x fp32, 2-D [R, C],
//     contiguous; scale fp32, bf16 or fp16 of shape [R, 1]; zero point undefined or int8 [R, 1]
//     (result in the scale's dtype), or
//   - strategy group without a permuting g_idx (the caller checks); x fp32, bf16 or fp16, 2-D
//     [R, C], contiguous; scale fp32, bf16 or fp16 [R, C / group_size]; zero point undefined or
//     int8 of the scale's shape (result in x's dtype).
// Returns the same values in the same dtype as the generic path; an undefined tensor when the
// call is not of one of these forms.
at::Tensor fake_quantize_fast(const quant_args &args, const at::Tensor &x, const qparams &qp);

} // namespace llmc::quant
