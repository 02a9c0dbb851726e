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

// at::amin and at::amax over each bh x bw block of a 2-D x, as flatten_for_calibration's block
// layout reduces them ([ceil(rows / bh), ceil(cols / bw)], x's dtype): a block cut short by x's
// edge counts the zeros pad_to_blocks adds. Without the padded, transposed copy of x that layout
// makes. Returns false and leaves min and max alone unless x is a contiguous CPU fp32/bf16/fp16
// 2-D tensor with elements and bh, bw > 0.
bool minmax_blocks_fast(const at::Tensor &x, int64_t bh, int64_t bw, at::Tensor &min, at::Tensor &max);

// minmax_blocks_fast for contiguous x [rows, cols] on the calling thread, into mn and mx
// [ceil(rows / bh), ceil(cols / bw)]. T: float or c10::BFloat16.
template <class T>
void minmax_blocks_serial(const T *x, int64_t rows, int64_t cols, int64_t bh, int64_t bw, T *mn, T *mx);

} // namespace llmc::quant
