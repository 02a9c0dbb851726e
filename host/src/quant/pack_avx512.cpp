#include "quant/pack_avx512.h"

#include "quant/float_round.h"

#include <atomic>
#include <cmath>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LLMC_PACK_AVX512 1
// GCC 12 takes the headers' deliberately undefined `__Y = __Y` (_mm512_undefined_*) for an
// uninitialised read once inlined into a target("avx512...") function.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace llmc::quant {

namespace {

std::atomic<bool> enabled{true};
std::atomic<uint64_t> rows_run{0}, fp4_rows_run{0}, fp8_rows_run{0};

#ifdef LLMC_PACK_AVX512

bool cpu_has_avx512() {
    static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return has;
}

#define LLMC_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

// float_round.h's round_to_finite<bf16> on 16 lanes: round half to even onto bf16, by integers.
LLMC_AVX512 inline __m512 round_bf16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), odd);
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

template <bool Bf16> LLMC_AVX512 inline __m512 load16(const void *p, int64_t i) {
    if constexpr (Bf16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(static_cast<const uint16_t *>(p) + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
        return _mm512_loadu_ps(static_cast<const float *>(p) + i);
    }
}

template <bool Bf16> inline float scalar_at(const void *p, int64_t i) {
    if constexpr (Bf16) {
        const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t *>(p)[i]) << 16;
        float f;
        __builtin_memcpy(&f, &u, 4);
        return f;
    } else {
        return static_cast<const float *>(p)[i];
    }
}

// acc + (p - x)²: a value's squared error into its column's lane, as sum_squares adds them (no
// fused multiply-add).
LLMC_AVX512 inline __m512 add_square(__m512 acc, __m512 p, __m512 x) {
    const __m512 d = _mm512_sub_ps(p, x);
    return _mm512_add_ps(acc, _mm512_mul_ps(d, d));
}

// sum_squares' end: the 16 lanes summed in double, in lane order.
LLMC_AVX512 inline double lanes_sum(__m512 acc) {
    alignas(64) float lane[16];
    _mm512_store_ps(lane, acc);
    double total = 0;
    for (float l : lane) total += l;
    return total;
}

// round_to_finite<T> on 16 lanes: bf16 rounds, float is as it is.
template <bool Bf16> LLMC_AVX512 inline __m512 round_to(__m512 v) {
    if constexpr (Bf16) return round_bf16(v);
    else return v;
}

// The INT loop's constants: the clamp range, the rounding addend and the nibble mask.
struct int_consts {
    __m512 lo, hi, magic;
    __m512i nibble;
};
// Half to even onto the integers in one addition: from 2^23 to 2^24 floats are one apart, so v +
// magic (v clamped to at most 8 bits' range) rounds v as quantize_one's (v + 1.5 * 2^23) - 1.5 *
// 2^23 does, and the sum's low bits are the rounded value plus the offset: the code (for int8
// values, offset 0, its low byte in two's complement). magic is even, so ties go to the same
// even value.
template <int Mode> LLMC_AVX512 inline int_consts int_consts_of(const int_pack_rows &a) {
    return {_mm512_set1_ps(a.lo), _mm512_set1_ps(a.hi), _mm512_set1_ps(12582912.0f + (Mode == 0 ? 0.0f : a.offset)),
            _mm512_set1_epi64(15)};
}

// Mode: 4 or 8 = packed words of that width; 0 = int8 values. Columns [c0, c1) of row `row`
// (its first element's index), one group, with scale s: codes into a.words (row's words at
// `words`) or a.codes, squared errors into acc's lanes, NaN quotients into nan.
template <bool Bf16, int Mode, bool Err>
LLMC_AVX512 __attribute__((always_inline)) inline void int_group(const int_pack_rows &a, const int_consts &k,
                                                                 int64_t row, int64_t c0, int64_t c1, float scale,
                                                                 uint32_t *words, __m512 &acc, __mmask16 &nan) {
    const __m512 s = _mm512_set1_ps(scale);
    // 4 bits: the group's 16 dequantized values (dequantize_one: code - offset times s, rounded
    // to the scale's dtype), looked up by code.
    __m512 table = _mm512_setzero_ps();
    if constexpr (Err && Mode == 4) {
        const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        table = round_to<Bf16>(_mm512_mul_ps(_mm512_sub_ps(codes, _mm512_set1_ps(a.offset)), s));
    }
    for (int64_t c = c0; c < c1; c += 16) {
        const __m512 x = load16<Bf16>(a.x, row + c);
        __m512 v = _mm512_div_ps(x, s);
        nan = _kor_mask16(nan, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
        v = round_to<Bf16>(v);
        v = _mm512_min_ps(_mm512_max_ps(v, k.lo), k.hi);
        const __m512 f = _mm512_add_ps(v, k.magic);
        const __m512i code = _mm512_castps_si512(f);
        if constexpr (Mode == 0) {
            _mm_storeu_si128(reinterpret_cast<__m128i *>(a.codes + row + c), _mm512_cvtepi32_epi8(code));
        } else if constexpr (Mode == 8) {
            _mm_storeu_si128(reinterpret_cast<__m128i *>(words + c / 4), _mm512_cvtepi32_epi8(code));
        } else {
            // Codes in pairs per 64-bit lane: the high one shifted down next to the low one makes
            // their byte, the first code in the low nibble (taken by a bitwise select: the shift
            // brings the low one's high bits down too).
            const __m512i pairs = _mm512_ternarylogic_epi64(k.nibble, code, _mm512_srli_epi64(code, 28), 0xCA);
            _mm_storel_epi64(reinterpret_cast<__m128i *>(words + c / 8), _mm512_cvtepi64_epi8(pairs));
        }
        if constexpr (Err && Mode == 4) {
            acc = add_square(acc, _mm512_permutexvar_ps(code, table), x);
        } else if constexpr (Err) {
            // dequantize_one: (q * s) rounded to the scale's dtype (q + 0 where quantize gave -0:
            // the same square).
            const __m512 q = _mm512_sub_ps(f, k.magic);
            acc = add_square(acc, round_to<Bf16>(_mm512_mul_ps(q, s)), x);
        }
    }
}

template <bool Bf16, int Mode, bool Err> LLMC_AVX512 int run_rows(const int_pack_rows &a, int64_t r0, int64_t r1) {
    const int64_t cols = a.cols, group = a.group, groups = cols / group;
    const int_consts k = int_consts_of<Mode>(a);
    __mmask16 nan = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t row = r * cols;
        uint32_t *words = a.words ? a.words + row * Mode / 32 : nullptr;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g)
            int_group<Bf16, Mode, Err>(a, k, row, g * group, (g + 1) * group,
                                       scalar_at<Bf16>(a.scale, a.per_row ? r * groups + g : 0), words, acc, nan);
        if constexpr (Err) a.row_error[r] = lanes_sum(acc);
    }
    return nan != 0;
}

// The largest magnitude's bits among columns [c0, c1) of row `row` (a multiple of 16 of them):
// for non-negative floats the integer order is the value order, and NaN lies above infinity.
template <bool Bf16> LLMC_AVX512 inline uint32_t absmax_bits(const void *x, int64_t row, int64_t c0, int64_t c1) {
    if constexpr (Bf16) {
        const uint16_t *p = static_cast<const uint16_t *>(x) + row;
        const __m512i magnitude = _mm512_set1_epi16(0x7FFF);
        __m512i m = _mm512_setzero_si512();
        int64_t c = c0;
        for (; c + 32 <= c1; c += 32) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(p + c), magnitude));
        if (c < c1) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_maskz_loadu_epi16(0xFFFF, p + c), magnitude));
        return _mm512_reduce_max_epu32(
            _mm512_max_epu32(_mm512_and_si512(m, _mm512_set1_epi32(0xFFFF)), _mm512_srli_epi32(m, 16)));
    } else {
        const uint32_t *p = static_cast<const uint32_t *>(x) + row;
        const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
        __m512i m = _mm512_setzero_si512();
        for (int64_t c = c0; c < c1; c += 16) m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_loadu_si512(p + c), magnitude));
        return _mm512_reduce_max_epu32(m);
    }
}

// run_rows observing each group's scale first (int_pack_rows' scale_out): a row's scales all
// before its codes, so that each group's chain from its values to its scale (a reduction, a
// division, the rounding) overlaps the others' instead of holding up the group's codes.
template <bool Bf16, int Mode, bool Err>
LLMC_AVX512 int observe_rows(const int_pack_rows &a, int64_t r0, int64_t r1) {
    const int64_t cols = a.cols, group = a.group, groups = cols / group;
    const int_consts k = int_consts_of<Mode>(a);
    const uint32_t inf_bits = Bf16 ? 0x7F80u : 0x7F800000u;
    __mmask16 nan = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t row = r * cols;
        uint32_t bad = 0;
        for (int64_t g = 0; g < groups; ++g) {
            const uint32_t m = absmax_bits<Bf16>(a.x, row, g * group, (g + 1) * group);
            bad |= m >= inf_bits; // qparams_of_groups declines a min or max not finite
            // symmetric_scales: absmax / half_range rounded to x's dtype, zero replaced by eps.
            const uint32_t bits = Bf16 ? m << 16 : m;
            float absmax;
            __builtin_memcpy(&absmax, &bits, 4);
            float s = absmax / a.half_range;
            if constexpr (Bf16) s = round_to_finite<c10::BFloat16>(s);
            if (s == 0.0f) s = a.eps;
            uint32_t u;
            __builtin_memcpy(&u, &s, 4);
            if constexpr (Bf16) static_cast<uint16_t *>(a.scale_out)[r * groups + g] = static_cast<uint16_t>(u >> 16);
            else static_cast<uint32_t *>(a.scale_out)[r * groups + g] = u;
        }
        if (bad) return 2;
        uint32_t *words = a.words ? a.words + row * Mode / 32 : nullptr;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g)
            int_group<Bf16, Mode, Err>(a, k, row, g * group, (g + 1) * group,
                                       scalar_at<Bf16>(a.scale_out, r * groups + g), words, acc, nan);
        if constexpr (Err) a.row_error[r] = lanes_sum(acc);
    }
    return nan != 0;
}

// fp4_codes_range's steps for rows [r0, r1): XBf16 / SBf16 the weight's and scale's dtypes (else
// float), the computation's bf16 only when both are.
template <bool XBf16, bool SBf16, bool Zp, bool Err>
LLMC_AVX512 int fp4_rows(const fp4_pack_rows &a, int64_t r0, int64_t r1) {
    constexpr bool TBf16 = XBf16 && SBf16;
    const int64_t cols = a.cols, group = a.group, groups = cols / group;
    const __m512 six = _mm512_set1_ps(6.0f), minus_six = _mm512_set1_ps(-6.0f), zero = _mm512_setzero_ps();
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u)), eight = _mm512_set1_epi32(8);
    // The E2M1 grid by index.
    const __m512 grid_of = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 0, 0, 0, 0, 0, 0, 0, 0);
    // fp4_one's grid index as a lookup: a magnitude within [0, 6] has its interval between the
    // thresholds (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5: none has more than two mantissa bits) told
    // by its exponent and top two mantissa bits, key = (bits >> 21) - 4 * 124 (below 4, clamped
    // at 0, under 0.25: index 0);
    // each interval starts at its threshold, where a value goes up (>= 0.75, 1.75, 3.5). A value
    // exactly on a threshold that rounds down (0.25, 1.25, 2.5, 5: ties to the even index) has
    // its low 21 bits zero and takes the second table.
    const __m512i idx_lo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4);
    const __m512i idx_hi = _mm512_setr_epi32(4, 5, 5, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7);
    const __m512i tie_lo = _mm512_setr_epi32(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 4);
    const __m512i tie_hi = _mm512_setr_epi32(4, 4, 5, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7);
    const __m512i key_base = _mm512_set1_epi32(4 * 124), low_bits = _mm512_set1_epi32(0x1FFFFF);
    __mmask16 nan = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t row = r * cols;
        uint8_t *out = a.out + row / 2;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t k = a.per_row ? r * groups + g : 0;
            const __m512 s = _mm512_set1_ps(scalar_at<SBf16>(a.scale, k));
            const __m512 z = Zp ? _mm512_set1_ps(a.zero_point[k]) : zero;
            for (int64_t c = g * group, end = (g + 1) * group; c < end; c += 16) {
                const __m512 x = load16<XBf16>(a.x, row + c);
                __m512 v = _mm512_div_ps(x, s);
                nan = _kor_mask16(nan, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
                v = round_to<TBf16>(v);
                if constexpr (Zp) v = round_to<TBf16>(_mm512_add_ps(v, z));
                v = _mm512_min_ps(_mm512_max_ps(v, minus_six), six);
                const __m512i av = _mm512_and_si512(_mm512_castps_si512(v), magnitude);
                const __m512i key =
                    _mm512_max_epi32(_mm512_sub_epi32(_mm512_srli_epi32(av, 21), key_base), _mm512_setzero_si512());
                const __mmask16 on_threshold = _mm512_testn_epi32_mask(av, low_bits);
                const __m512i idx = _mm512_mask_mov_epi32(_mm512_permutex2var_epi32(idx_lo, key, idx_hi), on_threshold,
                                                          _mm512_permutex2var_epi32(tie_lo, key, tie_hi));
                // A negative value (not -0) takes the sign: -g (so -0 at index 0) and code bit 3.
                const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
                const __m512 g_abs = _mm512_permutexvar_ps(idx, grid_of);
                const __m512 grid = _mm512_castsi512_ps(
                    _mm512_mask_xor_epi32(_mm512_castps_si512(g_abs), neg, _mm512_castps_si512(g_abs), sign));
                const __m512i code = _mm512_mask_or_epi32(idx, neg, idx, eight);
                const __m512i pairs = _mm512_or_si512(code, _mm512_srli_epi64(code, 28));
                _mm_storel_epi64(reinterpret_cast<__m128i *>(out + c / 2), _mm512_cvtepi64_epi8(pairs));
                if constexpr (Err) {
                    // dequantize_one<S, X>: (grid - z) and its product with s rounded to the
                    // scale's dtype, then to the weight's.
                    const __m512 q = Zp ? round_to<SBf16>(_mm512_sub_ps(grid, z)) : grid;
                    acc = add_square(acc, round_to<XBf16 && !SBf16>(round_to<SBf16>(_mm512_mul_ps(q, s))), x);
                }
            }
        }
        if constexpr (Err) a.row_error[r] = lanes_sum(acc);
    }
    return nan != 0;
}

template <bool XBf16, bool SBf16> int fp4_dtypes(const fp4_pack_rows &a, int64_t r0, int64_t r1) {
    if (a.zero_point)
        return a.row_error ? fp4_rows<XBf16, SBf16, true, true>(a, r0, r1)
                           : fp4_rows<XBf16, SBf16, true, false>(a, r0, r1);
    return a.row_error ? fp4_rows<XBf16, SBf16, false, true>(a, r0, r1)
                       : fp4_rows<XBf16, SBf16, false, false>(a, r0, r1);
}

// fp8_codes_range's steps for rows [r0, r1): XBf16 / SBf16 the weight's and scale's dtypes, the
// computation's bf16 only when both are, RBf16 the error's fake-quantized values' dtype. Zp: 0
// none, 1 zero points, 2 zero points all +0 (symmetric schemes store them so): adding +0 still
// turns -0 into +0, but rounds nothing, and grid - 0 is the grid value, which every dtype holds.
template <bool XBf16, bool SBf16, int Zp, bool Err, bool RBf16>
LLMC_AVX512 int fp8_rows(const fp8_pack_rows &a, int64_t r0, int64_t r1) {
    constexpr bool TBf16 = XBf16 && SBf16;
    const int64_t cols = a.cols, group = a.group, groups = cols / group;
    const __m512 hi = _mm512_set1_ps(448.0f), lo = _mm512_set1_ps(-448.0f), zero = _mm512_setzero_ps();
    const __m512 times512 = _mm512_set1_ps(512.0f), magic = _mm512_set1_ps(12582912.0f);
    const __m512 over512 = _mm512_set1_ps(1.0f / 512.0f);
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF), sign_bit = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i half_less = _mm512_set1_epi32(0x7FFFF), one = _mm512_set1_epi32(1);
    const __m512i smallest_normal = _mm512_set1_epi32(121 << 23), rebias = _mm512_set1_epi32(120 << 3);
    __mmask16 nan = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t row = r * cols;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t k = a.per_row ? r * groups + g : 0;
            const __m512 s = _mm512_set1_ps(scalar_at<SBf16>(a.scale, k));
            const __m512 z = Zp == 1 ? _mm512_set1_ps(a.zero_point[k]) : zero;
            for (int64_t c = g * group, end = (g + 1) * group; c < end; c += 16) {
                const __m512 x = load16<XBf16>(a.x, row + c);
                __m512 v = _mm512_div_ps(x, s);
                nan = _kor_mask16(nan, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
                v = round_to<TBf16>(v);
                if constexpr (Zp == 1) v = round_to<TBf16>(_mm512_add_ps(v, z));
                if constexpr (Zp == 2) v = _mm512_add_ps(v, zero);
                v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                // fp8_e4m3_encode_in_range: a normal value keeps 3 mantissa bits (half to even, a
                // carry into the exponent); below 2^-6 the grid is k * 2^-9, k by the magic add.
                const __m512i bits = _mm512_castps_si512(v);
                const __m512i sign = _mm512_and_si512(bits, sign_bit), mag = _mm512_and_si512(bits, magnitude);
                const __m512i rr = _mm512_srli_epi32(
                    _mm512_add_epi32(_mm512_add_epi32(mag, half_less), _mm512_and_si512(_mm512_srli_epi32(mag, 20), one)),
                    20);
                const __m512 kk = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_castsi512_ps(mag), times512), magic), magic);
                const __mmask16 normal = _mm512_cmpge_epu32_mask(mag, smallest_normal);
                const __m512i code = _mm512_mask_mov_epi32(_mm512_cvttps_epi32(kk), normal, _mm512_sub_epi32(rr, rebias));
                _mm_storeu_si128(reinterpret_cast<__m128i *>(a.out + row + c),
                                 _mm512_cvtepi32_epi8(_mm512_or_si512(code, _mm512_srli_epi32(sign, 24))));
                if constexpr (Err) {
                    const __m512i gbits = _mm512_or_si512(
                        _mm512_mask_mov_epi32(_mm512_castps_si512(_mm512_mul_ps(kk, over512)), normal,
                                              _mm512_slli_epi32(rr, 20)),
                        sign);
                    const __m512 grid = _mm512_castsi512_ps(gbits);
                    // dequantize_one<S, R>: (grid - z) and its product with s rounded to the
                    // scale's dtype, then to R.
                    const __m512 q = Zp == 1 ? round_to<SBf16>(_mm512_sub_ps(grid, z)) : grid;
                    acc = add_square(acc, round_to<RBf16 && !SBf16>(round_to<SBf16>(_mm512_mul_ps(q, s))), x);
                }
            }
        }
        if constexpr (Err) a.row_error[r] = lanes_sum(acc);
    }
    return nan != 0;
}

template <bool XBf16, bool SBf16, int Zp> int fp8_zp(const fp8_pack_rows &a, int64_t r0, int64_t r1) {
    // The error's dtype: x's where asked, else the computation's.
    if (!a.row_error) return fp8_rows<XBf16, SBf16, Zp, false, false>(a, r0, r1);
    const bool r_bf16 = a.error_in_x ? XBf16 : (XBf16 && SBf16);
    return r_bf16 ? fp8_rows<XBf16, SBf16, Zp, true, true>(a, r0, r1) : fp8_rows<XBf16, SBf16, Zp, true, false>(a, r0, r1);
}

template <bool XBf16, bool SBf16> int fp8_dtypes(const fp8_pack_rows &a, int64_t r0, int64_t r1) {
    if (!a.zero_point) return fp8_zp<XBf16, SBf16, 0>(a, r0, r1);
    const int64_t groups = a.cols / a.group;
    const int64_t k0 = a.per_row ? r0 * groups : 0, k1 = a.per_row ? r1 * groups : 1;
    bool zeros = true; // +0 only: v + -0 keeps a -0 quotient's sign, v + +0 does not
    for (int64_t k = k0; k < k1 && zeros; ++k) zeros = a.zero_point[k] == 0.0f && !std::signbit(a.zero_point[k]);
    return zeros ? fp8_zp<XBf16, SBf16, 2>(a, r0, r1) : fp8_zp<XBf16, SBf16, 1>(a, r0, r1);
}

template <bool Bf16, int Mode> int run_mode(const int_pack_rows &a, int64_t r0, int64_t r1) {
    if (a.scale_out)
        return a.row_error ? observe_rows<Bf16, Mode, true>(a, r0, r1) : observe_rows<Bf16, Mode, false>(a, r0, r1);
    return a.row_error ? run_rows<Bf16, Mode, true>(a, r0, r1) : run_rows<Bf16, Mode, false>(a, r0, r1);
}

template <bool Bf16> int run_dtype(const int_pack_rows &a, int64_t r0, int64_t r1) {
    if (a.codes) return run_mode<Bf16, 0>(a, r0, r1);
    return a.bits == 4 ? run_mode<Bf16, 4>(a, r0, r1) : run_mode<Bf16, 8>(a, r0, r1);
}

#endif

} // namespace

void int_pack_range(int_pack_rows &a, int bits) {
    a.bits = bits;
    a.lo = -std::ldexp(1.0f, bits - 1);
    a.hi = std::ldexp(1.0f, bits - 1) - 1.0f;
    a.offset = std::ldexp(1.0f, bits - 1);
}

bool int_pack_avx512_serves(const int_pack_rows &a) {
#ifdef LLMC_PACK_AVX512
    if (!enabled || !cpu_has_avx512()) return false;
    if (a.group <= 0 || a.group % 16 != 0 || a.cols % a.group != 0) return false;
    if (a.scale_out && (!a.per_row || a.half_range <= 0)) return false;
    if (a.codes) return a.bits >= 1 && a.bits <= 8;
    return a.words && (a.bits == 4 || a.bits == 8);
#else
    (void)a;
    return false;
#endif
}

int int_pack_avx512_run(const int_pack_rows &a, int64_t r0, int64_t r1) {
#ifdef LLMC_PACK_AVX512
    rows_run += static_cast<uint64_t>(r1 - r0);
    return a.bf16 ? run_dtype<true>(a, r0, r1) : run_dtype<false>(a, r0, r1);
#else
    (void)a, (void)r0, (void)r1;
    return 0;
#endif
}

bool fp4_pack_avx512_serves(const fp4_pack_rows &a) {
#ifdef LLMC_PACK_AVX512
    return enabled && cpu_has_avx512() && a.out && a.group > 0 && a.group % 16 == 0 && a.cols % a.group == 0;
#else
    (void)a;
    return false;
#endif
}

int fp4_pack_avx512_run(const fp4_pack_rows &a, int64_t r0, int64_t r1) {
#ifdef LLMC_PACK_AVX512
    fp4_rows_run += static_cast<uint64_t>(r1 - r0);
    if (a.x_bf16) return a.scale_bf16 ? fp4_dtypes<true, true>(a, r0, r1) : fp4_dtypes<true, false>(a, r0, r1);
    return a.scale_bf16 ? fp4_dtypes<false, true>(a, r0, r1) : fp4_dtypes<false, false>(a, r0, r1);
#else
    (void)a, (void)r0, (void)r1;
    return 0;
#endif
}

bool fp8_pack_avx512_serves(const fp8_pack_rows &a) {
#ifdef LLMC_PACK_AVX512
    return enabled && cpu_has_avx512() && a.out && a.group > 0 && a.group % 16 == 0 && a.cols % a.group == 0;
#else
    (void)a;
    return false;
#endif
}

int fp8_pack_avx512_run(const fp8_pack_rows &a, int64_t r0, int64_t r1) {
#ifdef LLMC_PACK_AVX512
    fp8_rows_run += static_cast<uint64_t>(r1 - r0);
    if (a.x_bf16) return a.scale_bf16 ? fp8_dtypes<true, true>(a, r0, r1) : fp8_dtypes<true, false>(a, r0, r1);
    return a.scale_bf16 ? fp8_dtypes<false, true>(a, r0, r1) : fp8_dtypes<false, false>(a, r0, r1);
#else
    (void)a, (void)r0, (void)r1;
    return 0;
#endif
}

bool pack_avx512_enable(bool on) { return enabled.exchange(on); }

uint64_t int_pack_avx512_rows_run() { return rows_run; }
uint64_t fp4_pack_avx512_rows_run() { return fp4_rows_run; }
uint64_t fp8_pack_avx512_rows_run() { return fp8_rows_run; }

} // namespace llmc::quant
