// Scalar rounding as ATen's ops round: the fast paths (fake_quant_fast, quantize_pack) replay the
// generic path's ops one element at a time and must round every intermediate exactly as it does.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// The fast paths' hot loops are built three times on x86-64, for x86-64-v4 (AVX-512), AVX2 and
// the baseline, and the loader picks one for the CPU (GCC's target_clones): more lanes where the
// CPU has them, and the same bits, as the host is built with -ffp-contract=off (GCC's default for
// C++, even in ISO mode, is to fuse a * b + c into an FMA where the target has one).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LLMC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define LLMC_VECTOR_CLONES
#endif
// For the helpers those loops call: a helper GCC leaves out of line is built for the baseline
// only (seen: sum_squares once two clones called it, a seventh of the INT export's time).
#if defined(__GNUC__)
#define LLMC_INLINE inline __attribute__((always_inline))
#else
#define LLMC_INLINE inline
#endif

namespace llmc::quant {

// v rounded to T and back, as an ATen op whose result is in T rounds it (half to even).
template <class T> inline float round_to(float v) { return static_cast<float>(T(v)); }
template <> inline float round_to<float>(float v) { return v; }

// The same for values known not to be NaN: bf16 with integer ops, so that loops vectorize
// (c10's round_to_nearest_even; its NaN case is what the caller has ruled out).
template <class T> inline float round_to_finite(float v) { return round_to<T>(v); }
template <> LLMC_INLINE float round_to_finite<c10::BFloat16>(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    std::memcpy(&v, &u, 4);
    return v;
}

// Exact widening to float; bf16 by a shift, so that loops vectorize.
template <class X> inline float to_float(X v) { return static_cast<float>(v); }
template <> LLMC_INLINE float to_float<c10::BFloat16>(c10::BFloat16 v) {
    const uint32_t u = static_cast<uint32_t>(v.x) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// quantize_values' steps before the rounding onto the type's grid, for one value: T(x / s), then
// T(+ z) where there is a zero point (a symmetric one too: -0 + 0 is +0, which FP codes tell
// apart), clamped to [lo, hi]. A NaN quotient sets `bad`. Shared by the fused INT, FP8 and FP4
// loops, which keep each value in registers instead of a pass per step.
template <class T>
LLMC_INLINE float scaled_one(float xv, float s, float z, bool has_zp, float lo, float hi, int &bad) {
    float v = xv / s;
    bad |= v != v;
    v = round_to_finite<T>(v);
    if (has_zp) v = round_to_finite<T>(v + z);
    return std::min(std::max(v, lo), hi);
}
// One value through quantize_group's steps, for computation dtypes whose rounding vectorizes
// (float, bf16): scaled_one, then round half to even keeping -0.
template <class T>
LLMC_INLINE float quantize_one(float xv, float s, float z, bool has_zp, float lo, float hi, int &bad) {
    const float magic = 12582912.0f; // 1.5 * 2^23
    const float v = scaled_one<T>(xv, s, z, has_zp, lo, hi, bad);
    return std::copysign((v + magic) - magic, v);
}
// compressed-tensors' dequantize of one quantized integer v (exact in every float dtype, so the
// first rounding to S is a no-op): (v - z) * s with each step rounded to the scale dtype S, then
// the result rounded to fake_quantize's result dtype R.
template <class S, class R> LLMC_INLINE float dequantize_one(float v, float s, float z, bool has_zp) {
    const float q = has_zp ? round_to_finite<S>(v - z) : v;
    const float p = round_to_finite<S>(q * s);
    if constexpr (std::is_same<S, R>::value) return p; // rounding to S twice is rounding once
    else return round_to_finite<R>(p);
}
template <class T> constexpr bool fused_rounding = !std::is_same<T, c10::Half>::value;

// quantize_values for one group of n values sharing scale s (and zero point z when has_zp), stage
// by stage so the loops vectorize: f = T(x / s); f = T(f + z); clamp to [lo, hi]; round half to
// even, keeping -0 as round() does (valid for |f| < 2^22, which the clamp ensures). T is the
// computation dtype. Returns nonzero when a quotient is NaN: callers hand those to the generic
// path, whose NaN bits they do not replay.
template <class X, class T>
inline int quantize_group(const X *x, int64_t n, float s, float z, bool has_zp, float lo, float hi, float *f) {
    const float magic = 12582912.0f; // 1.5 * 2^23
    int bad = 0;
    if constexpr (fused_rounding<T>) {
        if (has_zp)
            for (int64_t j = 0; j < n; ++j) f[j] = quantize_one<T>(to_float(x[j]), s, z, true, lo, hi, bad);
        else
            for (int64_t j = 0; j < n; ++j) f[j] = quantize_one<T>(to_float(x[j]), s, 0.0f, false, lo, hi, bad);
        return bad;
    }
    for (int64_t j = 0; j < n; ++j) f[j] = to_float(x[j]) / s;
    for (int64_t j = 0; j < n; ++j) bad |= f[j] != f[j];
    for (int64_t j = 0; j < n; ++j) f[j] = round_to_finite<T>(f[j]);
    if (has_zp)
        for (int64_t j = 0; j < n; ++j) f[j] = round_to_finite<T>(f[j] + z);
    for (int64_t j = 0; j < n; ++j) {
        const float v = std::min(std::max(f[j], lo), hi);
        f[j] = std::copysign((v + magic) - magic, v);
    }
    return bad;
}

} // namespace llmc::quant
