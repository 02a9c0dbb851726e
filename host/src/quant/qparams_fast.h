// qparams_observe for blocks of weight rows without tensors: the fused export pass observes a
// block of a few hundred rows at a time, where ATen's fixed cost per op (about twenty small ops
// per block) came to a third of the pack's own compute.
#pragma once

#include "quant/args.h"

#include <ATen/ATen.h>

namespace llmc::quant {

// Whether observe_rows_minmax serves these (validated) args for weights of dtype x: INT of 1..8
// bits, static, strategy channel or group, a memoryless min/max observer, zp_dtype int8,
// scale_dtype unset or x's; x float32 or bfloat16. Its results then have qparams_observe's dtypes
// and shapes: scale of x's dtype, zero point int8 (zeros when symmetric), both [rows, groups].
bool observe_rows_minmax_applies(const quant_args &args, at::ScalarType x);

// qparams_observe(args, rows, observed_role::weight).scale and .zero_point, bit for bit, for a
// contiguous 2-D block `rows` whose columns split into whole groups, into `scale` and
// `zero_point` (contiguous, [rows, groups], the dtypes above), on the calling thread: every step
// of qparams_from_minmax replayed in float with the rounding of its ATen op. Returns false
// (leaving the outputs' contents unspecified) when a group holds a NaN or an infinity, or is all
// zeros with asymmetric args (a 0/0 zero point): the generic path decides what those mean.
bool observe_rows_minmax(const quant_args &args, const at::Tensor &rows, at::Tensor &scale, at::Tensor &zero_point);

} // namespace llmc::quant
