#include "quant/minmax_fast.h"

#include "quant/float_round.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

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

// Stores a min/max pair of keys as values of T at mn and mx: NaN both when `nan`.
template <class T, class S> LLMC_INLINE void store_minmax(S lo, S hi, bool nan, T *mn, T *mx) {
    constexpr int shift = 8 * sizeof(S) - 1;
    S out_lo = static_cast<S>(lo ^ ((lo >> shift) & bits_of<T>::magnitude));
    S out_hi = static_cast<S>(hi ^ ((hi >> shift) & bits_of<T>::magnitude));
    if (nan) {
        const T q = std::numeric_limits<T>::quiet_NaN();
        std::memcpy(&out_lo, &q, sizeof(S));
        out_hi = out_lo;
    }
    std::memcpy(mn, &out_lo, sizeof(S)); // an element of x, or NaN
    std::memcpy(mx, &out_hi, sizeof(S));
}

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
        store_minmax<T>(lo, hi, nan != 0, mn + r, mx + r);
    }
}

// The min and max of each bh x bw block of bands [b0, b1) of bh rows of x [rows, cols], into
// mn and mx [ceil(rows / bh), ceil(cols / bw)] (row b of them for band b). Each band's columns are
// reduced over its rows first (elementwise over a row: a loop that vectorizes, where a block's
// row of bw values is too short a reduction), then each block's bw column results. A block cut
// short by the edge counts the zeros pad_to_blocks would add.
template <class T>
LLMC_VECTOR_CLONES void minmax_bands(const T *x, int64_t b0, int64_t b1, int64_t rows, int64_t cols, int64_t bh,
                                     int64_t bw, T *mn, T *mx) {
    using B = bits_of<T>;
    using S = typename B::S;
    constexpr int shift = 8 * sizeof(S) - 1;
    const int64_t cb = (cols + bw - 1) / bw;
    std::vector<S> lo(static_cast<size_t>(cols)), hi(static_cast<size_t>(cols)), nan(static_cast<size_t>(cols));
    for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * bh, r1 = std::min(rows, r0 + bh);
        std::fill(lo.begin(), lo.end(), std::numeric_limits<S>::max());
        std::fill(hi.begin(), hi.end(), std::numeric_limits<S>::min());
        std::fill(nan.begin(), nan.end(), S(0));
        for (int64_t r = r0; r < r1; ++r) {
            const S *p = reinterpret_cast<const S *>(x + r * cols);
            S *l = lo.data(), *h = hi.data(), *n = nan.data();
            for (int64_t j = 0; j < cols; ++j) {
                const S u = p[j];
                const S key = static_cast<S>(u ^ ((u >> shift) & B::magnitude));
                l[j] = key < l[j] ? key : l[j];
                h[j] = key > h[j] ? key : h[j];
                n[j] |= static_cast<S>((u & B::magnitude) > B::inf);
            }
        }
        for (int64_t c = 0; c < cb; ++c) {
            const int64_t j0 = c * bw, j1 = std::min(cols, j0 + bw);
            const bool padded = r1 - r0 < bh || j1 - j0 < bw;
            S l = padded ? S(0) : std::numeric_limits<S>::max(); // the key of +0
            S h = padded ? S(0) : std::numeric_limits<S>::min();
            S any_nan = 0;
            for (int64_t j = j0; j < j1; ++j) {
                l = std::min(l, lo[static_cast<size_t>(j)]);
                h = std::max(h, hi[static_cast<size_t>(j)]);
                any_nan |= nan[static_cast<size_t>(j)];
            }
            store_minmax<T>(l, h, any_nan != 0, mn + b * cb + c, mx + b * cb + c);
        }
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

bool minmax_blocks_fast(const at::Tensor &x, int64_t bh, int64_t bw, at::Tensor &min, at::Tensor &max) {
    if (x.dim() != 2 || x.numel() == 0 || bh <= 0 || bw <= 0 || !x.is_contiguous() || x.device().type() != at::kCPU)
        return false;
    const at::ScalarType t = x.scalar_type();
    if (t != at::kFloat && t != at::kBFloat16 && t != at::kHalf) return false;
    const int64_t rows = x.size(0), cols = x.size(1), rb = (rows + bh - 1) / bh, cb = (cols + bw - 1) / bw;
    at::Tensor mn = at::empty({rb, cb}, x.options()), mx = at::empty({rb, cb}, x.options());
    auto bands = [&](auto *p, auto *lo, auto *hi) {
        at::parallel_for(0, rb, 1,
                         [&](int64_t b0, int64_t b1) { minmax_bands(p, b0, b1, rows, cols, bh, bw, lo, hi); });
    };
    if (t == at::kFloat) bands(x.data_ptr<float>(), mn.data_ptr<float>(), mx.data_ptr<float>());
    else if (t == at::kBFloat16)
        bands(x.data_ptr<c10::BFloat16>(), mn.data_ptr<c10::BFloat16>(), mx.data_ptr<c10::BFloat16>());
    else bands(x.data_ptr<c10::Half>(), mn.data_ptr<c10::Half>(), mx.data_ptr<c10::Half>());
    min = mn;
    max = mx;
    return true;
}

template <class T>
void minmax_blocks_serial(const T *x, int64_t rows, int64_t cols, int64_t bh, int64_t bw, T *mn, T *mx) {
    minmax_bands(x, 0, (rows + bh - 1) / bh, rows, cols, bh, bw, mn, mx);
}
template void minmax_blocks_serial<float>(const float *, int64_t, int64_t, int64_t, int64_t, float *, float *);
template void minmax_blocks_serial<c10::BFloat16>(const c10::BFloat16 *, int64_t, int64_t, int64_t, int64_t,
                                                  c10::BFloat16 *, c10::BFloat16 *);

template <class T> void minmax_rows_serial(const T *x, int64_t n, int64_t k, T *mn, T *mx) {
    minmax_rows(x, 0, n, k, mn, mx);
}
template void minmax_rows_serial<float>(const float *, int64_t, int64_t, float *, float *);
template void minmax_rows_serial<c10::BFloat16>(const c10::BFloat16 *, int64_t, int64_t, c10::BFloat16 *,
                                                c10::BFloat16 *);
template void minmax_rows_serial<c10::Half>(const c10::Half *, int64_t, int64_t, c10::Half *, c10::Half *);

} // namespace llmc::quant
