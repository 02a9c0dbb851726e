// Weight qparams of several weights observed as one: their rows concatenated, through one fresh
// observer. That is how a tensor_group partner set (q/k/v, gate/up) gets the one global scale
// vLLM loads them with. The host observes such a set here, for the quantization service's
// weight_qparams_store, without the concatenated copy and reading each weight once.
#pragma once

#include "quant/args.h"
#include "quant/qparams.h"
#include "quant/quantize_pack.h"

#include <ATen/ATen.h>

#include <vector>

namespace llmc::quant {

// A fresh weight observer of `args` given at::cat(weights, 0) once, its get_qparams() cut back
// into each weight's rows: per weight a scale and zero point of its rows (the observer's dtypes;
// views of one tensor when there are several weights), and for tensor_group the one global scale
// of them all. `reads` (empty, or one per weight, each
// possibly empty) supply a weight's rows as quantize_pack's row_reader does. Static min/max
// observers of strategy group or tensor_group over 2-D weights of one float dtype and width
// (whole groups, no g_idx) take the group minima and maxima a block of rows at a time, in
// parallel; any other call concatenates and observes (the same result). Throws what observing
// throws.
std::vector<qparams> qparams_observe_joined(const quant_args &args, const std::vector<at::Tensor> &weights,
                                            const std::vector<row_reader> &reads = {});

} // namespace llmc::quant
