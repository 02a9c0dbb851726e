// qparams_observe for blocks of weight rows without tensors: the fused export pass observes a
// block of a few hundred rows at a time, where ATen's fixed cost per op (about twenty small ops
// per block) came to a third of the pack's own compute. And qparams_from_minmax's NVFP4 and MX
// scales in one loop each, where its ATen chain (FP8 rounding through frexp, log2, pow) dominated
// those formats' observation.
#pragma once

#include "quant/args.h"
#include "quant/qparams.h"

#include <ATen/ATen.h>

namespace llmc::quant {

// Whether observe_rows_minmax serves these (validated) args for weights of dtype x: static INT of
// 1..8 bits with zp_dtype int8, or static symmetric FP8 E4M3 that is not MX; strategy channel,
// group or block; a memoryless min/max observer; scale_dtype unset or x's; x float32 or bfloat16.
// Its results then have qparams_observe's dtypes and shapes: scale of x's dtype, zero point int8
// (INT; zeros when symmetric) or float32 zeros (FP8), both [rows, groups] or, for blocks,
// [ceil(rows / bh), ceil(cols / bw)].
bool observe_rows_minmax_applies(const quant_args &args, at::ScalarType x);

// qparams_observe(args, rows, observed_role::weight).scale and .zero_point, bit for bit, for a
// contiguous 2-D block `rows` whose columns split into whole groups (blocks may be cut short by
// its edges, as the weight's own are: the caller's block of rows starts at a multiple of bh), into
// `scale` and `zero_point` (contiguous, the shapes and dtypes above), on the calling thread: every
// step of qparams_from_minmax replayed in float with the rounding of its ATen op. Returns false
// (leaving the outputs' contents unspecified) when a group holds a NaN or an infinity, or is all
// zeros with asymmetric args (a 0/0 zero point): the generic path decides what those mean.
bool observe_rows_minmax(const quant_args &args, const at::Tensor &rows, at::Tensor &scale, at::Tensor &zero_point);

// qparams_from_minmax(args, min, max, &global_scale), bit for bit, in one loop instead of a dozen
// ATen ops (the FP8 rounding of the scales through frexp): for symmetric FP4 args that are not MX
// with FP8 E4M3 scales (NVFP4's local scales), min and max contiguous float32 or bfloat16 of one
// shape with at least one dimension, a 1-D float32 global scale of one element. Returns false,
// leaving `qp` alone, when the call is not of that form or a min or max is not finite.
bool qparams_from_minmax_fp4(const quant_args &args, const at::Tensor &min, const at::Tensor &max,
                             const at::Tensor &global_scale, qparams &qp);

// qparams_from_minmax(args, min, max) for MX args (FP4 or FP8, groups of 32, E8M0 scales),
// symmetric, without a global scale; the same conditions on min and max, and the same refusals.
bool qparams_from_minmax_mx(const quant_args &args, const at::Tensor &min, const at::Tensor &max, qparams &qp);

} // namespace llmc::quant
