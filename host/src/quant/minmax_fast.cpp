#include "quant/minmax_fast.h"

#include "quant/float_round.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace llmc::quant {

namespace {

// Float bits as signed integers that order as the floats do (-0 below +0, NaNs beyond the
// infinities): integer min/max vectorize, where float ones with their NaN rules do not. The map
// is its own inverse.
template <class T> struct bits_of;
template <> struct bits_of<float> {
    using S = int32_t;
    static constexpr S magnitude = 0x7FFFFFFF, inf = 0x7F800000;
};
template <> struct bits_of<c10::BFloat16> {
    using S = int16_t;
    static constexpr S magnitude = 0x7FFF, inf = 0x7F80;
};
template <> struct bits_of<c10::Half> {
    using S = int16_t;
    static constexpr S magnitude = 0x7FFF, inf = 0x7C00;
};

// Rows [r0, r1) of x [rows, k].
template <class T> LLMC_VECTOR_CLONES void minmax_rows(const T *x, int64_t r0, int64_t r1, int64_t k, T *mn, T *mx) {
    using B = bits_of<T>;
    using S = typename B::S;
    static_assert(sizeof(S) == sizeof(T), "bits");
    constexpr int shift = 8 * sizeof(S) - 1;
    for (int64_t r = r0; r < r1; ++r) {
        const S *p = reinterpret_cast<const S *>(x + r * k);
        S lo = std::numeric_limits<S>::max(), hi = std::numeric_limits<S>::min();
        S nan = 0;
        for (int64_t j = 0; j < k; ++j) {
            const S u = p[j];
            const S key = static_cast<S>(u ^ ((u >> shift) & B::magnitude));
            lo = key < lo ? key : lo;
            hi = key > hi ? key : hi;
            nan |= static_cast<S>((u & B::magnitude) > B::inf);
        }
        S out_lo = static_cast<S>(lo ^ ((lo >> shift) & B::magnitude));
        S out_hi = static_cast<S>(hi ^ ((hi >> shift) & B::magnitude));
        if (nan) {
            const T q = std::numeric_limits<T>::quiet_NaN();
            std::memcpy(&out_lo, &q, sizeof(S));
            out_hi = out_lo;
        }
        std::memcpy(mn + r, &out_lo, sizeof(S)); // an element of x, or NaN
        std::memcpy(mx + r, &out_hi, sizeof(S));
    }
}

template <class T> void run(const T *x, int64_t rows, int64_t k, T *mn, T *mx) {
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(k, 1));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) { minmax_rows(x, r0, r1, k, mn, mx); });
}

} // namespace

bool minmax_last_dim_fast(const at::Tensor &x, at::Tensor &min, at::Tensor &max) {
    if (x.dim() < 2 || x.size(0) != 1 || x.numel() == 0 || !x.is_contiguous() || x.device().type() != at::kCPU)
        return false;
    const at::ScalarType t = x.scalar_type();
    if (t != at::kFloat && t != at::kBFloat16 && t != at::kHalf) return false;
    const int64_t k = x.size(-1), rows = x.numel() / k;
    const std::vector<int64_t> shape(x.sizes().begin() + 1, x.sizes().end() - 1);
    at::Tensor mn = at::empty(shape, x.options()), mx = at::empty(shape, x.options());
    if (t == at::kFloat) run(x.data_ptr<float>(), rows, k, mn.data_ptr<float>(), mx.data_ptr<float>());
    else if (t == at::kBFloat16)
        run(x.data_ptr<c10::BFloat16>(), rows, k, mn.data_ptr<c10::BFloat16>(), mx.data_ptr<c10::BFloat16>());
    else run(x.data_ptr<c10::Half>(), rows, k, mn.data_ptr<c10::Half>(), mx.data_ptr<c10::Half>());
    min = mn;
    max = mx;
    return true;
}

template <class T> void minmax_rows_serial(const T *x, int64_t n, int64_t k, T *mn, T *mx) {
    minmax_rows(x, 0, n, k, mn, mx);
}
template void minmax_rows_serial<float>(const float *, int64_t, int64_t, float *, float *);
template void minmax_rows_serial<c10::BFloat16>(const c10::BFloat16 *, int64_t, int64_t, c10::BFloat16 *,
                                                c10::BFloat16 *);
template void minmax_rows_serial<c10::Half>(const c10::Half *, int64_t, int64_t, c10::Half *, c10::Half *);

} // namespace llmc::quant
