// float32 to bfloat16 or float16 on the work pool, for large conversions made where ATen's ops
// run on one thread (under serial_aten_ops): the scales of every group of an NVFP4 partner set
// stored in the weights' dtype took a third of the host's store through Tensor::to there.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace llmc {

// Sources smaller than this convert through ATen: a few chunks are not worth waking the pool.
constexpr int64_t float_convert_pooled_min = int64_t{1} << 17;

// A new tensor holding `src` in `dtype`: what src.to(dtype, false, /*copy=*/true) gives, bit for
// bit but for NaN's payload (a NaN stays a NaN; ATen's own bits for it differ between its
// vectorized loop and its tail). Contiguous float32 CPU sources of at least
// float_convert_pooled_min elements going to bfloat16 or float16 are converted in chunks spread
// over the work pool; anything else through ATen.
at::Tensor float_convert_pooled(const at::Tensor &src, at::ScalarType dtype);

} // namespace llmc
