// The observers' min and max in one pass: weights are the model's largest tensors, and ATen's
// amin and amax read them twice. Same values as the ATen reductions (a NaN anywhere in a row
// makes that row's min and max NaN; which zero of -0/+0 a row of zeros reports may differ, and
// nothing downstream sees the sign: qparams clamp the range to include zero first).
#pragma once

#include <ATen/ATen.h>

namespace llmc::quant {

// at::amin(x, {0, -1}) and at::amax(x, {0, -1}) for x of shape [1, ..., K] (the layout
// flatten_for_calibration gives weights and activations), in x's dtype. Returns false and leaves
// min and max alone when x is not a contiguous CPU fp32/bf16/fp16 tensor of that form.
bool minmax_last_dim_fast(const at::Tensor &x, at::Tensor &min, at::Tensor &max);

// The same for n contiguous rows of k values at x, on the calling thread: mn[i] and mx[i] of row
// i. T: float, c10::BFloat16 or c10::Half.
template <class T> void minmax_rows_serial(const T *x, int64_t n, int64_t k, T *mn, T *mx);

} // namespace llmc::quant
