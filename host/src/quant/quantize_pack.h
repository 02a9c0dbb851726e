// quantize() then pack_int32() in one parallel pass: what the exporter writes for INT
// pack-quantized weights, without the int8 / int32 temporaries and their passes over memory.
#pragma once

#include "quant/args.h"
#include "quant/qparams.h"

#include <ATen/ATen.h>

namespace llmc::quant {

// pack_int32(quantize(args, weight, qp), num_bits, 1), bit for bit, when: INT args of 1..8 bits;
// strategy tensor, channel or group (qparams [1], [rows, 1] or [rows, cols / group]); no g_idx and
// no global scale; a 2-D float weight. An undefined tensor when the call is not of that form or a
// quotient is NaN (the generic path decides what that means). With `mean_squared_error`, also
// mean((fake_quantize(weight) - weight)²) in the same pass (set only when the packing succeeded).
at::Tensor quantize_pack_int32(const quant_args &args, const at::Tensor &weight, const qparams &qp,
                               const at::Tensor *g_idx = nullptr, double *mean_squared_error = nullptr);

} // namespace llmc::quant
