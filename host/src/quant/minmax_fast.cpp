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
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LLMC_MINMAX_AVX2 1
#define LLMC_AVX2 __attribute__((target("avx2")))

// Keys of 16 16-bit floats (store_minmax's order: bits_of's map on 16 lanes).
LLMC_AVX2 inline __m256i keys16(const int16_t *p) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
    return _mm256_xor_si256(u, _mm256_and_si256(_mm256_srai_epi16(u, 15), _mm256_set1_epi16(0x7FFF)));
}

template <bool Max> LLMC_AVX2 inline __m256i pick16(__m256i a, __m256i b) {
    return Max ? _mm256_max_epi16(a, b) : _mm256_min_epi16(a, b);
}

// 16 vectors of 16 lanes, vector v all group v's, to one vector of 16 groups' minima (or
// maxima): four rounds, each halving the lanes a group has and the vectors holding them.
// Group 2j's result lands in lane j and group 2j+1's in lane 8 + j.
template <bool Max> LLMC_AVX2 inline __m256i reduce16(__m256i *v) {
    for (int i = 0; i < 8; ++i) // 128-bit halves: 8 lanes a group, two groups a vector
        v[i] = pick16<Max>(_mm256_permute2x128_si256(v[2 * i], v[2 * i + 1], 0x20),
                           _mm256_permute2x128_si256(v[2 * i], v[2 * i + 1], 0x31));
    for (int i = 0; i < 4; ++i) // 64-bit quarters: 4 lanes a group
        v[i] = pick16<Max>(_mm256_unpacklo_epi64(v[2 * i], v[2 * i + 1]),
                           _mm256_unpackhi_epi64(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; ++i) { // dwords: 2 lanes a group
        const __m256 a = _mm256_castsi256_ps(v[2 * i]), b = _mm256_castsi256_ps(v[2 * i + 1]);
        v[i] = pick16<Max>(_mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))),
                           _mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))));
    }
    __m256i w[2];
    for (int i = 0; i < 2; ++i) { // words: each dword's two lanes, sign-extended, then packed
        const __m256i m = pick16<Max>(v[i], _mm256_srli_epi32(v[i], 16));
        w[i] = _mm256_srai_epi32(_mm256_slli_epi32(m, 16), 16);
    }
    return _mm256_packs_epi32(w[0], w[1]);
}

// Groups of n 16-bit floats (bf16, fp16) of length k, a multiple of 16, sixteen groups at a time
// with AVX2: each group's keys reduced lane-wise into one vector, then the sixteen vectors
// together (reduce16). The portable loop reduces each group across its own lanes, which for
// groups of 16 or 32 (NVFP4, MXFP4) costs far more than reading them. Min and max as
// store_minmax stores them (NaN both for a group with a NaN). Returns the groups done (a multiple
// of 16); the caller does the rest.
LLMC_AVX2 int64_t minmax_16bit_avx2(const int16_t *x, int64_t n, int64_t k, int16_t inf, int16_t quiet_nan,
                                    int16_t *mn, int16_t *mx) {
    const __m256i magnitude = _mm256_set1_epi16(0x7FFF), q = _mm256_set1_epi16(quiet_nan);
    // NaN keys lie beyond the infinities': above +inf's, below -inf's.
    const __m256i pos_inf_key = _mm256_set1_epi16(inf);
    const __m256i neg_inf_key =
        _mm256_set1_epi16(static_cast<int16_t>(static_cast<uint16_t>(0x8000u | static_cast<uint16_t>(inf)) ^ 0x7FFFu));
    int64_t done = 0;
    for (; done + 16 <= n; done += 16) {
        __m256i lo[16], hi[16];
        for (int v = 0; v < 16; ++v) {
            // Vector 2j takes group j and vector 2j+1 group 8 + j: reduce16 puts them in order.
            const int16_t *g = x + (done + (v % 2 ? 8 + v / 2 : v / 2)) * k;
            lo[v] = hi[v] = keys16(g);
            for (int64_t c = 16; c < k; c += 16) {
                const __m256i kc = keys16(g + c);
                lo[v] = _mm256_min_epi16(lo[v], kc);
                hi[v] = _mm256_max_epi16(hi[v], kc);
            }
        }
        const __m256i l = reduce16<false>(lo), h = reduce16<true>(hi);
        const __m256i nan = _mm256_or_si256(_mm256_cmpgt_epi16(h, pos_inf_key), _mm256_cmpgt_epi16(neg_inf_key, l));
        // Keys back to bits (the map is its own inverse), NaN groups quiet NaN.
        const __m256i lb = _mm256_xor_si256(l, _mm256_and_si256(_mm256_srai_epi16(l, 15), magnitude));
        const __m256i hb = _mm256_xor_si256(h, _mm256_and_si256(_mm256_srai_epi16(h, 15), magnitude));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(mn + done), _mm256_blendv_epi8(lb, q, nan));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(mx + done), _mm256_blendv_epi8(hb, q, nan));
    }
    return done;
}

bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2");
    return has;
}
#endif

// Rows [r0, r1) of x [rows, k].
template <class T> LLMC_VECTOR_CLONES void minmax_rows(const T *x, int64_t r0, int64_t r1, int64_t k, T *mn, T *mx) {
    using B = bits_of<T>;
    using S = typename B::S;
    static_assert(sizeof(S) == sizeof(T), "bits");
    constexpr int shift = 8 * sizeof(S) - 1;
#ifdef LLMC_MINMAX_AVX2
    if constexpr (sizeof(T) == 2) {
        if (k % 16 == 0 && r1 - r0 >= 16 && cpu_has_avx2()) {
            const T q = std::numeric_limits<T>::quiet_NaN();
            int16_t quiet;
            std::memcpy(&quiet, &q, 2);
            r0 += minmax_16bit_avx2(reinterpret_cast<const int16_t *>(x + r0 * k), r1 - r0, k, B::inf, quiet,
                                    reinterpret_cast<int16_t *>(mn + r0), reinterpret_cast<int16_t *>(mx + r0));
        }
    }
#endif
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
