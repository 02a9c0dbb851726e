#include "util/float_convert.h"

#include "util/work_pool.h"

#include <algorithm>

namespace llmc {

namespace {

template <class T> void convert_chunks(const float *src, T *dst, int64_t n) {
    constexpr int64_t chunk = int64_t{1} << 16;
    work_pool_run(static_cast<int>((n + chunk - 1) / chunk), [&](int task) {
        const int64_t begin = task * chunk, end = std::min(n, begin + chunk);
        for (int64_t i = begin; i < end; ++i) dst[i] = static_cast<T>(src[i]);
    });
}

} // namespace

at::Tensor float_convert_pooled(const at::Tensor &src, at::ScalarType dtype) {
    if (src.scalar_type() != at::kFloat || !src.is_contiguous() || !src.device().is_cpu() ||
        src.numel() < float_convert_pooled_min || (dtype != at::kBFloat16 && dtype != at::kHalf))
        return src.to(dtype, false, /*copy=*/true);
    at::Tensor out = at::empty(src.sizes(), src.options().dtype(dtype));
    if (dtype == at::kBFloat16) convert_chunks(src.data_ptr<float>(), out.data_ptr<c10::BFloat16>(), src.numel());
    else convert_chunks(src.data_ptr<float>(), out.data_ptr<c10::Half>(), src.numel());
    return out;
}

} // namespace llmc
