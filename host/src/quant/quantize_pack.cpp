#include "quant/quantize_pack.h"

#include "io/weight_rows.h"
#include "quant/float_formats.h"
#include "quant/float_round.h"
#include "quant/pack_avx512.h"
#include "quant/packing.h"
#include "quant/qparams_fast.h"
#include "util/cpu_allocator.h"
#include "util/work_pool.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace llmc::quant {

namespace {

// quantize() then pack_int32() fused into one pass over the weight, for INT weights with
// strategy tensor, channel or group and no g_idx (the pack-quantized formats RTN and GPTQ write).
// Every value takes the steps quant::quantize takes (x / s rounded to the computation dtype T,
// + zero point rounded to T, clamp, round half to even), so the words are bit for bit those of
// the generic path; it saves the int8, int32 and shifted temporaries, their passes and their
// page faults. Returns an undefined tensor when a quotient is NaN (the generic path decides what
// that means).

// Σ d² over a row's differences d, summed over 16 lanes so that the loop vectorizes (with 8,
// GCC's AVX-512 clone reduced each 16 products to 8 lanes with scalar adds: a fifth of the pack).
LLMC_INLINE double sum_squares(const float *d, int64_t n) {
    float lane[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; ++l) lane[l] += d[i + l] * d[i + l];
    for (; i < n; ++i) lane[0] += d[i] * d[i];
    double total = 0;
    for (float l : lane) total += l;
    return total;
}

// One row's unsigned codes (each below 2^B) into packed_words(cols, B) little-endian words, the
// first code in the lowest bits. B is a constant so that every shift and word index is one: where
// B divides 32 a word takes 32 / B codes (a loop GCC vectorizes); otherwise 32 codes fill B words
// exactly. The tail is packed as the generic pack_int32 does.
template <int B> LLMC_INLINE void pack_codes_b(const uint32_t *u, int64_t cols, uint32_t *row) {
    int64_t i = 0, w = 0;
    if constexpr (32 % B == 0) {
        constexpr int per = 32 / B;
        for (; i + per <= cols; i += per, ++w) {
            uint32_t word = 0;
            for (int k = 0; k < per; ++k) word |= u[i + k] << (k * B);
            row[w] = word;
        }
    } else {
        for (; i + 32 <= cols; i += 32, w += B) {
            uint32_t out[B] = {};
#pragma GCC unroll 32
            for (int k = 0; k < 32; ++k) {
                const int bit = k * B, word = bit / 32, off = bit % 32;
                out[word] |= u[i + k] << off;
                if (off + B > 32) out[word + 1] |= u[i + k] >> (32 - off); // spills into the next word
            }
            for (int k = 0; k < B; ++k) row[w + k] = out[k];
        }
    }
    if (i == cols) return;
    const int64_t end = packed_words(cols, B);
    std::fill(row + w, row + end, 0u);
    for (int64_t bit = 0; i < cols; ++i, bit += B) {
        const int64_t word = w + bit / 32;
        const unsigned off = static_cast<unsigned>(bit % 32);
        row[word] |= u[i] << off;
        if (off + B > 32) row[word + 1] |= u[i] >> (32 - off);
    }
}

// pack_codes_b for `bits` of 1..8. Out of the quantizing loops (one copy, not one per dtype).
LLMC_VECTOR_CLONES void codes_pack(const uint32_t *u, int64_t cols, int bits, uint32_t *row) {
    switch (bits) {
    case 1: pack_codes_b<1>(u, cols, row); break;
    case 2: pack_codes_b<2>(u, cols, row); break;
    case 3: pack_codes_b<3>(u, cols, row); break;
    case 4: pack_codes_b<4>(u, cols, row); break;
    case 5: pack_codes_b<5>(u, cols, row); break;
    case 6: pack_codes_b<6>(u, cols, row); break;
    case 7: pack_codes_b<7>(u, cols, row); break;
    default: pack_codes_b<8>(u, cols, row); break;
    }
}

// One row's unsigned codes as the int8 values the int- and naive-quantized formats store.
LLMC_VECTOR_CLONES void codes_store(const uint32_t *u, int64_t cols, int bits, int8_t *codes) {
    const int32_t offset = 1 << (bits - 1);
    for (int64_t i = 0; i < cols; ++i) codes[i] = static_cast<int8_t>(static_cast<int32_t>(u[i]) - offset);
}

// Rows [r0, r1) into their packed words, or with `codes` into int8 values; f and u are scratch for
// one row. Nonzero when a quotient is NaN. With Err, each row's Σ (fake_quantize(x) - x)² into
// row_error too, fake_quantize's result in dtype R (the weight's for group, else the
// computation's): where the rounding fuses, in the same loop that quantizes, from the value
// before it becomes a code.
template <class X, class S, class T, class R, bool Err>
LLMC_VECTOR_CLONES int quantize_pack_range(const X *xp, int64_t r0, int64_t r1, int64_t cols, int64_t group,
                                           bool per_row, const S *sp, const float *zpp, float lo, float hi,
                                           float offset, int bits, int64_t words, uint32_t *op, int8_t *codes,
                                           float *f, uint32_t *u, double *row_error) {
    const int64_t groups = cols / group;
    int bad = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const X *in = xp + r * cols;
        if constexpr (fused_rounding<T>) {
            // Straight to the unsigned codes, without the float row in between.
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t k = per_row ? r * groups + g : 0;
                const float s = to_float(sp[k]);
                const X *xi = in + g * group;
                uint32_t *ui = u + g * group;
                float *di = f + g * group;
                if (zpp) {
                    const float z = zpp[k];
                    for (int64_t j = 0; j < group; ++j) {
                        const float xv = to_float(xi[j]);
                        const float v = quantize_one<T>(xv, s, z, true, lo, hi, bad);
                        ui[j] = static_cast<uint32_t>(static_cast<int32_t>(v + offset));
                        if constexpr (Err) di[j] = dequantize_one<S, R>(v, s, z, true) - xv;
                    }
                } else {
                    for (int64_t j = 0; j < group; ++j) {
                        const float xv = to_float(xi[j]);
                        const float v = quantize_one<T>(xv, s, 0.0f, false, lo, hi, bad);
                        ui[j] = static_cast<uint32_t>(static_cast<int32_t>(v + offset));
                        if constexpr (Err) di[j] = dequantize_one<S, R>(v, s, 0.0f, false) - xv;
                    }
                }
            }
            if constexpr (Err) row_error[r] = sum_squares(f, cols);
        } else {
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t k = per_row ? r * groups + g : 0;
                const float s = to_float(sp[k]);
                const float z = zpp ? zpp[k] : 0.0f;
                bad |= quantize_group<X, T>(in + g * group, group, s, z, zpp != nullptr, lo, hi, f + g * group);
            }
            if constexpr (Err) {
                // f holds the quantized values (before the offset): their differences replace them.
                for (int64_t g = 0; g < groups; ++g) {
                    const int64_t k = per_row ? r * groups + g : 0;
                    const float s = to_float(sp[k]);
                    const float z = zpp ? zpp[k] : 0.0f;
                    for (int64_t j = g * group; j < (g + 1) * group; ++j) {
                        u[j] = static_cast<uint32_t>(static_cast<int32_t>(f[j] + offset));
                        f[j] = dequantize_one<S, R>(f[j], s, z, zpp != nullptr) - to_float(in[j]);
                    }
                }
                row_error[r] = sum_squares(f, cols);
            } else {
                for (int64_t i = 0; i < cols; ++i) u[i] = static_cast<uint32_t>(static_cast<int32_t>(f[i] + offset));
            }
        }
        if (codes) codes_store(u, cols, bits, codes + r * cols);
        else codes_pack(u, cols, bits, op + r * words);
    }
    return bad;
}

// One value through quantize_values' steps for an FP8 E4M3 weight: T(x / s), T(+ z) where there
// is a zero point, clamp to ±448, onto the grid; its code, and the grid value in *grid.
template <class T> LLMC_INLINE uint8_t fp8_one(float xv, float s, float z, bool has_zp, int &bad, float *grid) {
    return fp8_e4m3_encode_in_range(scaled_one<T>(xv, s, z, has_zp, -448.0f, 448.0f, bad), grid);
}

// quantize() of FP8 E4M3 weights for rows [r0, r1), straight to the uint8 codes the
// float-quantized format stores; f is scratch for one row. Nonzero when a quotient is NaN. With
// Err, each row's Σ (fake_quantize(x) - x)² into row_error, as quantize_pack_range.
template <class X, class S, class T, class R, bool Err>
LLMC_VECTOR_CLONES int fp8_codes_range(const X *xp, int64_t r0, int64_t r1, int64_t cols, int64_t group,
                                       bool per_row, const S *sp, const float *zpp, uint8_t *op, float *f,
                                       double *row_error) {
    const int64_t groups = cols / group;
    int bad = 0;
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t k = per_row ? r * groups + g : 0;
            const float s = to_float(sp[k]);
            const X *xi = xp + r * cols + g * group;
            uint8_t *oi = op + r * cols + g * group;
            float *di = f + g * group;
            float grid;
            if (zpp) {
                const float z = zpp[k];
                for (int64_t j = 0; j < group; ++j) {
                    const float xv = to_float(xi[j]);
                    oi[j] = fp8_one<T>(xv, s, z, true, bad, &grid);
                    if constexpr (Err) di[j] = dequantize_one<S, R>(grid, s, z, true) - xv;
                }
            } else {
                for (int64_t j = 0; j < group; ++j) {
                    const float xv = to_float(xi[j]);
                    oi[j] = fp8_one<T>(xv, s, 0.0f, false, bad, &grid);
                    if constexpr (Err) di[j] = dequantize_one<S, R>(grid, s, 0.0f, false) - xv;
                }
            }
        }
        if constexpr (Err) row_error[r] = sum_squares(f, cols);
    }
    return bad;
}

// One value through quantize_values' steps for an FP4 E2M1 weight: T(x / s), T(+ z) where there
// is a zero point, clamp to ±6, then fp4_e2m1_round (thresholds on |v|, ties to the even
// mantissa; a negative value keeps its sign on zero) and fp4_e2m1_encode; its code (sign bit 3 |
// grid index: the count of thresholds |v| passes), and the grid value in *grid.
template <class T> LLMC_INLINE uint8_t fp4_one(float xv, float s, float z, bool has_zp, int &bad, float *grid) {
    const float v = scaled_one<T>(xv, s, z, has_zp, -6.0f, 6.0f, bad);
    const float a = std::fabs(v);
    // In float throughout, so that GCC vectorizes it (with int counts it kept the loop scalar).
    float idx = 0.0f;
    idx += a > 0.25f ? 1.0f : 0.0f;
    idx += a >= 0.75f ? 1.0f : 0.0f;
    idx += a > 1.25f ? 1.0f : 0.0f;
    idx += a >= 1.75f ? 1.0f : 0.0f;
    idx += a > 2.5f ? 1.0f : 0.0f;
    idx += a >= 3.5f ? 1.0f : 0.0f;
    idx += a > 5.0f ? 1.0f : 0.0f;
    const bool negative = v < 0.0f;
    // {0, .5, 1, 1.5, 2, 3, 4, 6}: every candidate computed, then selected (GCC does not
    // speculate a float op that may trap, so a conditional one would keep the loop scalar).
    const float half = idx * 0.5f, less_two = idx - 2.0f;
    const float upper = idx < 7.0f ? less_two : 6.0f;
    const float g = idx < 4.0f ? half : upper;
    const float minus_g = -g;
    *grid = negative ? minus_g : g;
    const float code = idx + (negative ? 8.0f : 0.0f); // sign bit 3 (an int select kept it scalar)
    return static_cast<uint8_t>(static_cast<int>(code));
}

// quantize() then pack_fp4() of FP4 E2M1 weights for rows [r0, r1): codes two to a byte, the
// even column in the low nibble; c is scratch for one row's codes, f for its differences. The
// rest as fp8_codes_range.
template <class X, class S, class T, class R, bool Err>
LLMC_VECTOR_CLONES int fp4_codes_range(const X *xp, int64_t r0, int64_t r1, int64_t cols, int64_t group,
                                       bool per_row, const S *sp, const float *zpp, uint8_t *op, uint8_t *c,
                                       float *f, float *row_s, float *row_z, double *row_error) {
    const int64_t groups = cols / group;
    int bad = 0;
    for (int64_t r = r0; r < r1; ++r) {
        // Groups of 16 or 32 are too short a loop to vectorize: spread the row's scales (and zero
        // points) over its columns and run one loop over the row.
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t k = per_row ? r * groups + g : 0;
            std::fill(row_s + g * group, row_s + (g + 1) * group, to_float(sp[k]));
            if (zpp) std::fill(row_z + g * group, row_z + (g + 1) * group, zpp[k]);
        }
        const X *xi = xp + r * cols;
        float grid;
        if (zpp) {
            for (int64_t j = 0; j < cols; ++j) {
                const float xv = to_float(xi[j]);
                c[j] = fp4_one<T>(xv, row_s[j], row_z[j], true, bad, &grid);
                if constexpr (Err) f[j] = dequantize_one<S, R>(grid, row_s[j], row_z[j], true) - xv;
            }
        } else {
            for (int64_t j = 0; j < cols; ++j) {
                const float xv = to_float(xi[j]);
                c[j] = fp4_one<T>(xv, row_s[j], 0.0f, false, bad, &grid);
                if constexpr (Err) f[j] = dequantize_one<S, R>(grid, row_s[j], 0.0f, false) - xv;
            }
        }
        uint8_t *row = op + r * (cols / 2);
        for (int64_t j = 0; j < cols / 2; ++j) row[j] = static_cast<uint8_t>(c[2 * j] | c[2 * j + 1] << 4);
        if constexpr (Err) row_error[r] = sum_squares(f, cols);
    }
    return bad;
}

// Runs kernel(r0, r1, zpp, f, row_error) over chunks of rows in parallel: zpp the zero point as
// quantize_values adds it (converted to x's dtype; null without one), f scratch for one row,
// row_error null without `mean_squared_error`. Per-row errors are summed in row order afterwards,
// so the figure does not depend on the thread count. False when a kernel reports a NaN quotient.
template <class K>
bool fused_rows_run(const at::Tensor &x, const at::Tensor &zp, double *mean_squared_error, K kernel) {
    const int64_t rows = x.size(0), cols = x.size(1);
    at::Tensor zx;
    if (zp.defined()) {
        serial_aten_ops small;
        zx = zp.to(x.scalar_type()).to(at::kFloat).contiguous();
    }
    const float *zpp = zx.defined() ? zx.data_ptr<float>() : nullptr;
    std::atomic<bool> nan{false};
    std::vector<double> row_error(mean_squared_error ? static_cast<size_t>(rows) : 0);
    // Chunks of at least ~256K values: enough work per thread to hide the scheduling.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(cols, 1));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> f(static_cast<size_t>(cols));
        if (kernel(r0, r1, zpp, f.data(), mean_squared_error ? row_error.data() : nullptr)) nan = true;
    });
    if (nan) return false;
    if (mean_squared_error) {
        double total = 0;
        for (double e : row_error) total += e;
        *mean_squared_error = total / static_cast<double>(rows * cols);
    }
    return true;
}

// `out`: int32 [rows, words] of packed codes, or int8 [rows, cols] of values; contiguous (a row
// slice of a larger result is).
template <class X, class S, class T>
at::Tensor quantize_pack_rows(const at::Tensor &x, const at::Tensor &scale, const at::Tensor &zp, int64_t group,
                              int bits, double *mean_squared_error, bool error_in_x, at::Tensor out) {
    const int64_t cols = x.size(1), words = packed_words(cols, bits);
    const bool per_row = scale.numel() != 1;
    const X *xp = x.data_ptr<X>();
    const S *sp = scale.data_ptr<S>();
    const bool codes = out.scalar_type() == at::kChar;
    uint32_t *op = codes ? nullptr : reinterpret_cast<uint32_t *>(out.data_ptr<int32_t>());
    int8_t *cp = codes ? out.data_ptr<int8_t>() : nullptr;
    // Symmetric weights whose dtypes are all bf16 or all float: the AVX-512 loop where the CPU has it.
    int_pack_rows avx;
    int_pack_range(avx, bits);
    const float lo = avx.lo, hi = avx.hi, offset = avx.offset;
    constexpr bool same_types = std::is_same<X, S>::value && std::is_same<X, T>::value &&
                                (std::is_same<X, float>::value || std::is_same<X, c10::BFloat16>::value);
    if (same_types && !zp.defined()) {
        avx.x = xp;
        avx.scale = sp;
        avx.bf16 = std::is_same<X, c10::BFloat16>::value;
        avx.cols = cols;
        avx.group = group;
        avx.per_row = per_row;
        avx.words = op;
        avx.codes = cp;
        if (!int_pack_avx512_serves(avx)) avx.x = nullptr;
    }
    const bool ok = fused_rows_run(x, zp, mean_squared_error,
                                   [&](int64_t r0, int64_t r1, const float *zpp, float *f, double *row_error) {
                                       if (avx.x) {
                                           int_pack_rows rows = avx;
                                           rows.row_error = row_error;
                                           return int_pack_avx512_run(rows, r0, r1);
                                       }
                                       std::vector<uint32_t> u(static_cast<size_t>(cols));
                                       auto run = [&](auto kernel) {
                                           return kernel(xp, r0, r1, cols, group, per_row, sp, zpp, lo, hi, offset,
                                                         bits, words, op, cp, f, u.data(), row_error);
                                       };
                                       if (!row_error) return run(quantize_pack_range<X, S, T, T, false>);
                                       if (error_in_x) return run(quantize_pack_range<X, S, T, X, true>);
                                       return run(quantize_pack_range<X, S, T, T, true>);
                                   });
    return ok ? out : at::Tensor();
}

// fp8_codes_range (`out`: uint8 [rows, cols]) or, with Fp4, fp4_codes_range (`out`: uint8
// [rows, cols / 2]) over every row, in parallel; `out` contiguous.
template <class X, class S, class T, bool Fp4>
at::Tensor codes_rows(const at::Tensor &x, const at::Tensor &scale, const at::Tensor &zp, int64_t group,
                      double *mean_squared_error, bool error_in_x, at::Tensor out) {
    const int64_t cols = x.size(1);
    const bool per_row = scale.numel() != 1;
    const X *xp = x.data_ptr<X>();
    const S *sp = scale.data_ptr<S>();
    uint8_t *op = out.data_ptr<uint8_t>();
    // bf16 and float weights and scales: the AVX-512 FP4 and FP8 loops where the CPU has them.
    constexpr bool avx_types = (std::is_same<X, float>::value || std::is_same<X, c10::BFloat16>::value) &&
                               (std::is_same<S, float>::value || std::is_same<S, c10::BFloat16>::value) &&
                               std::is_same<T, std::conditional_t<std::is_same<X, c10::BFloat16>::value &&
                                                                      std::is_same<S, c10::BFloat16>::value,
                                                                  c10::BFloat16, float>>::value;
    fp4_pack_rows avx;
    if (Fp4 && avx_types) {
        avx.x = xp;
        avx.scale = sp;
        avx.x_bf16 = std::is_same<X, c10::BFloat16>::value;
        avx.scale_bf16 = std::is_same<S, c10::BFloat16>::value;
        avx.cols = cols;
        avx.group = group;
        avx.per_row = per_row;
        avx.out = op;
        if (!fp4_pack_avx512_serves(avx)) avx.x = nullptr;
    }
    fp8_pack_rows avx8;
    if (!Fp4 && avx_types) {
        avx8.x = xp;
        avx8.scale = sp;
        avx8.x_bf16 = std::is_same<X, c10::BFloat16>::value;
        avx8.scale_bf16 = std::is_same<S, c10::BFloat16>::value;
        avx8.cols = cols;
        avx8.group = group;
        avx8.per_row = per_row;
        avx8.out = op;
        avx8.error_in_x = error_in_x;
        if (!fp8_pack_avx512_serves(avx8)) avx8.x = nullptr;
    }
    const bool ok = fused_rows_run(
        x, zp, mean_squared_error, [&](int64_t r0, int64_t r1, const float *zpp, float *f, double *row_error) {
            if constexpr (Fp4) {
                if (avx.x) {
                    fp4_pack_rows rows = avx;
                    rows.zero_point = zpp;
                    rows.row_error = row_error;
                    return fp4_pack_avx512_run(rows, r0, r1);
                }
                std::vector<uint8_t> c(static_cast<size_t>(cols));
                std::vector<float> row_s(static_cast<size_t>(cols)), row_z(zpp ? static_cast<size_t>(cols) : 0);
                auto run = [&](auto kernel) {
                    return kernel(xp, r0, r1, cols, group, per_row, sp, zpp, op, c.data(), f, row_s.data(),
                                  row_z.data(), row_error);
                };
                // FP4 strategies are group-like: fake_quantize's result is in the weight's dtype.
                if (!row_error) return run(fp4_codes_range<X, S, T, T, false>);
                return run(fp4_codes_range<X, S, T, X, true>);
            } else {
                if (avx8.x) {
                    fp8_pack_rows rows = avx8;
                    rows.zero_point = zpp;
                    rows.row_error = row_error;
                    return fp8_pack_avx512_run(rows, r0, r1);
                }
                auto run = [&](auto kernel) {
                    return kernel(xp, r0, r1, cols, group, per_row, sp, zpp, op, f, row_error);
                };
                if (!row_error) return run(fp8_codes_range<X, S, T, T, false>);
                if (error_in_x) return run(fp8_codes_range<X, S, T, X, true>);
                return run(fp8_codes_range<X, S, T, T, true>);
            }
        });
    return ok ? out : at::Tensor();
}

// The length of the groups of columns that share a scale when the fused loops serve this call
// (strategy tensor, channel or group with qparams of the matching shape, a float weight and
// scale, no global scale); 0 when they do not.
int64_t fused_group(const quant_args &w, const at::Tensor &weight, const qparams &qp) {
    if (qp.global_scale.defined() || !qp.scale.defined() || weight.dim() != 2) return 0;
    const int64_t rows = weight.size(0), cols = weight.size(1);
    if (rows == 0 || cols == 0) return 0;
    int64_t group = cols;
    const at::Tensor &s = qp.scale;
    switch (*w.strategy) {
    case quant_strategy::tensor:
        if (s.numel() != 1) return 0;
        break;
    case quant_strategy::channel:
        if (s.dim() != 2 || s.size(0) != rows || s.size(1) != 1) return 0;
        break;
    case quant_strategy::group:
    case quant_strategy::tensor_group: // its global scale already divided into the scale
        if (!w.group_size || *w.group_size <= 0 || cols % *w.group_size != 0) return 0;
        group = *w.group_size;
        if (s.dim() != 2 || s.size(0) != rows || s.size(1) != cols / group) return 0;
        break;
    case quant_strategy::block: // with its scales repeated down each block's rows (block_rows)
        if (!w.block_structure || (*w.block_structure)[1] <= 0 || cols % (*w.block_structure)[1] != 0) return 0;
        group = (*w.block_structure)[1];
        if (s.dim() != 2 || s.size(0) != rows || s.size(1) != cols / group) return 0;
        break;
    default: return 0;
    }
    if (qp.zero_point.defined() && qp.zero_point.sizes() != s.sizes()) return 0;
    auto is_float = [](at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; };
    if (!is_float(weight.scalar_type()) || !is_float(s.scalar_type())) return 0;
    return group;
}

// Calls f(X(), S(), T()) with the weight's, the scale's and the computation's C++ types.
template <class F> void dispatch_fused(at::ScalarType xt, at::ScalarType st, F f) {
    const at::ScalarType ct = at::promote_types(xt, st);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, xt, "fused_x", [&] {
        using X = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, st, "fused_s", [&] {
            using S = scalar_t;
            if (ct == at::kFloat) f(X(), S(), float());
            else if (ct == at::kBFloat16) f(X(), S(), c10::BFloat16());
            else if (ct == at::kHalf) f(X(), S(), c10::Half());
        });
    });
}

// Rows of block qparams t ([ceil(n / bh), k], contiguous) repeated down their bh rows each, for
// n rows starting at a band (a whole weight, or a block of its rows): [n, k] in `buffer` (made on
// first use, at least `capacity` rows). Undefined for an undefined t.
at::Tensor spread_rows(const at::Tensor &t, int64_t bh, int64_t n, int64_t capacity, at::Tensor &buffer) {
    if (!t.defined()) return t;
    if (!buffer.defined()) buffer = at::empty({std::max(n, capacity), t.size(1)}, t.options());
    const at::Tensor out = buffer.slice(0, 0, n);
    const int64_t row_bytes = t.size(1) * t.element_size();
    const char *src = static_cast<const char *>(t.data_ptr());
    char *dst = static_cast<char *>(out.data_ptr());
    for (int64_t r = 0; r < n; ++r) std::memcpy(dst + r * row_bytes, src + r / bh * row_bytes, row_bytes);
    return out;
}

// Block qparams ([ceil(rows / bh), cols / bw]) with each block's row of scales (and zero points)
// repeated for its bh rows: [rows, cols / bw]. Empty qparams when they are not of that shape, a
// global scale is set or bw does not divide the columns (quantize() pads those; the loops don't).
qparams block_rows(const quant_args &w, const at::Tensor &weight, const qparams &qp) {
    if (!w.block_structure || weight.dim() != 2 || !qp.scale.defined() || qp.global_scale.defined()) return {};
    const int64_t bh = (*w.block_structure)[0], bw = (*w.block_structure)[1];
    const int64_t rows = weight.size(0), cols = weight.size(1);
    if (bh <= 0 || bw <= 0 || cols % bw != 0) return {};
    const at::Tensor &s = qp.scale;
    if (s.dim() != 2 || s.size(0) != (rows + bh - 1) / bh || s.size(1) != cols / bw) return {};
    if (qp.zero_point.defined() && qp.zero_point.sizes() != s.sizes()) return {};
    at::Tensor scale_rows, zero_point_rows;
    const at::Tensor z = qp.zero_point.defined() ? qp.zero_point.contiguous() : at::Tensor();
    return qparams{spread_rows(s.contiguous(), bh, rows, rows, scale_rows),
                   spread_rows(z, bh, rows, rows, zero_point_rows), {}};
}

// quantize() of a float weight as codes into `out`, or into a new tensor when `out` is undefined:
// FP8 E4M3 codes (uint8 [rows, cols]), or FP4 E2M1 codes packed by pack_fp4 (uint8 [rows, cols /
// 2]; `qp` without a global scale: the caller has divided it into the scale). Undefined when the
// call is not of the fused form.
at::Tensor codes_into(const quant_args &w, const at::Tensor &weight, const qparams &qp, double *mean_squared_error,
                      at::Tensor out) {
    const bool fp4 = w.is_fp4();
    if (fp4 && *w.strategy != quant_strategy::group && *w.strategy != quant_strategy::tensor_group) return {};
    if (!fp4 && !w.is_fp8()) return {};
    const int64_t group = fused_group(w, weight, qp);
    if (group == 0 || (fp4 && group % 2 != 0)) return {};
    const at::Tensor x = weight.contiguous(), sc = qp.scale.contiguous();
    if (!out.defined())
        out = at::empty({x.size(0), fp4 ? x.size(1) / 2 : x.size(1)}, at::TensorOptions().dtype(at::kByte));
    // fake_quantize's result dtype: the weight's for group-like strategies (FP4's all are).
    const bool error_in_x = *w.strategy == quant_strategy::group || *w.strategy == quant_strategy::tensor_group;
    at::Tensor r;
    dispatch_fused(x.scalar_type(), sc.scalar_type(), [&](auto xv, auto sv, auto tv) {
        using X = decltype(xv);
        using S = decltype(sv);
        using T = decltype(tv);
        r = fp4 ? codes_rows<X, S, T, true>(x, sc, qp.zero_point, group, mean_squared_error, error_in_x, out)
                : codes_rows<X, S, T, false>(x, sc, qp.zero_point, group, mean_squared_error, error_in_x, out);
    });
    return r;
}

// quantize_pack_int32 into `out` (int32 [rows, words], contiguous), or with `codes` the int8
// values of quantize() (int8 [rows, cols]); into a new tensor when `out` is undefined.
at::Tensor quantize_pack_into(const quant_args &w, const at::Tensor &weight, const qparams &qp, const at::Tensor *g_idx,
                              double *mean_squared_error, at::Tensor out, bool codes = false) {
    if (w.type != quant_type::int_ || w.num_bits < 1 || w.num_bits > 8 || g_idx != nullptr) return {};
    const int64_t group = fused_group(w, weight, qp);
    if (group == 0) return {};
    const at::Tensor x = weight.contiguous(), sc = qp.scale.contiguous();
    if (!out.defined())
        out = codes ? at::empty({x.size(0), x.size(1)}, at::TensorOptions().dtype(at::kChar))
                    : at::empty({x.size(0), packed_words(x.size(1), w.num_bits)}, at::TensorOptions().dtype(at::kInt));
    // fake_quantize's result dtype: the weight's for group, else the computation's.
    const bool error_in_x = *w.strategy == quant_strategy::group;
    at::Tensor r;
    dispatch_fused(x.scalar_type(), sc.scalar_type(), [&](auto xv, auto sv, auto tv) {
        using X = decltype(xv);
        using S = decltype(sv);
        using T = decltype(tv);
        r = quantize_pack_rows<X, S, T>(x, sc, qp.zero_point, group, w.num_bits, mean_squared_error, error_in_x, out);
    });
    return r;
}

// Rows in blocks of ~256 KiB (whole bands of bh rows for block strategy), each read once (from
// `read` into a buffer of this thread's when it can, else from the weight), observed into
// *observed when no qparams are `given`, then quantized from cache: packed into int32 words (INT)
// or with `int_codes` as int8 values, as uint8 codes (FP8) or packed uint8 codes (FP4). The caller
// has checked that blocks of rows quantize as the whole weight does; `given` block-strategy
// qparams come spread over the rows (block_rows).
at::Tensor pack_in_blocks(const quant_args &w, const at::Tensor &x, const qparams *given, const row_reader &read,
                          qparams *observed, double *mean_squared_error, bool int_codes = false) {
    const bool fp8 = w.is_fp8(), fp4 = w.is_fp4();
    const int64_t rows = x.size(0), cols = x.size(1);
    const int64_t row_bytes = cols * x.element_size();
    // At most ~256 KiB, and at least one block per thread, so a small weight is split too (inside
    // the pool the row loops below run serially).
    const int64_t threads = work_pool_threads();
    int64_t block = std::max<int64_t>(1, std::min((int64_t{256} << 10) / row_bytes, (rows + threads - 1) / threads));
    // Observed block qparams need each block of rows to hold whole bands of the blocks' bh rows.
    const int64_t band = !given && *w.strategy == quant_strategy::block ? (*w.block_structure)[0] : 0;
    if (band) block = (block + band - 1) / band * band;
    const int64_t blocks = (rows + block - 1) / block;
    const bool per_row = given && given->scale.numel() != 1;
    // The result and the row buffers in mappings reused module after module (cpu_empty_cached).
    at::Tensor out = fp4         ? cpu_empty_cached({rows, cols / 2}, at::kByte)
                     : fp8       ? cpu_empty_cached({rows, cols}, at::kByte)
                     : int_codes ? cpu_empty_cached({rows, cols}, at::kChar)
                                 : cpu_empty_cached({rows, packed_words(cols, w.num_bits)}, at::kInt);
    // Observed qparams go straight into the weight's tensors where the tensor-free observer
    // serves the args; otherwise each block's come from qparams_observe and are joined at the end.
    const bool direct = !given && observe_rows_minmax_applies(w, x.scalar_type());
    at::Tensor scale_all, zero_point_all;
    if (direct) {
        int64_t n = rows, groups = *w.strategy == quant_strategy::group ? cols / *w.group_size : 1;
        if (band) {
            n = (rows + band - 1) / band;
            groups = (cols + (*w.block_structure)[1] - 1) / (*w.block_structure)[1];
        }
        scale_all = at::empty({n, groups}, x.options());
        // observe_rows_minmax's zero point: int8 for INT, float32 zeros for FP8.
        zero_point_all = at::empty({n, groups}, x.options().dtype(w.type == quant_type::int_ ? at::kChar : at::kFloat));
    }
    // Symmetric INT groups (or channels) of bf16 or float: the AVX-512 loop observes a row's group
    // scales just before packing it, while the row is in cache, where the CPU has the loop (no
    // min/max pass over the block and scale step first, which read a resident weight too large
    // for the cache from memory twice). A block it declines (a value not finite) goes the way
    // below.
    int_pack_rows observing;
    if (direct && w.type == quant_type::int_ && w.symmetric && !band && !fp8 &&
        (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat) &&
        (*w.strategy == quant_strategy::group || *w.strategy == quant_strategy::channel)) {
        const auto [q_min, q_max] = quant_range(w);
        const float bit_range = static_cast<float>(q_max) - static_cast<float>(q_min);
        const bool bf16 = x.scalar_type() == at::kBFloat16;
        const float eps = static_cast<float>(dtype_eps(bf16 ? dtype_id::bfloat16 : dtype_id::float32));
        observing.bf16 = bf16;
        observing.cols = cols;
        observing.group = *w.strategy == quant_strategy::group ? *w.group_size : cols;
        observing.per_row = true;
        int_pack_range(observing, w.num_bits);
        // As qparams_of_groups computes them.
        observing.half_range = static_cast<float>(static_cast<double>(bit_range) / 2);
        observing.eps = bf16 ? round_to<c10::BFloat16>(eps) : eps;
        // Placeholders for the check; each block sets its own.
        observing.x = x.data_ptr();
        observing.scale_out = scale_all.data_ptr();
        if (int_codes) observing.codes = out.data_ptr<int8_t>();
        else observing.words = reinterpret_cast<uint32_t *>(out.data_ptr<int32_t>());
        if (!int_pack_avx512_serves(observing)) observing.x = nullptr;
    }
    std::vector<std::vector<double>> row_errors(static_cast<size_t>(threads));
    std::vector<at::Tensor> scales(static_cast<size_t>(blocks)), zero_points(static_cast<size_t>(blocks));
    std::vector<double> sums(static_cast<size_t>(blocks), 0.0);
    // Each worker's spread-out block scales (block strategy).
    std::vector<at::Tensor> row_scales(static_cast<size_t>(threads)), row_zero_points(static_cast<size_t>(threads));
    const bool ok = weight_row_blocks(x, block, read, [&](int worker, int64_t r0, int64_t r1, const at::Tensor &part) {
        const int64_t b = r0 / block;
        at::Tensor &row_scale = row_scales[static_cast<size_t>(worker)];
        at::Tensor &row_zero_point = row_zero_points[static_cast<size_t>(worker)];
        qparams q;
        if (direct) {
            const int64_t q0 = band ? r0 / band : r0, q1 = band ? (r1 + band - 1) / band : r1;
            q.scale = scale_all.slice(0, q0, q1);
            q.zero_point = zero_point_all.slice(0, q0, q1);
            if (observing.x) {
                const int64_t n = r1 - r0;
                std::vector<double> &row_error = row_errors[static_cast<size_t>(worker)];
                if (mean_squared_error) row_error.resize(static_cast<size_t>(n));
                int_pack_rows a = observing;
                a.x = part.data_ptr();
                a.scale_out = q.scale.data_ptr();
                if (int_codes) a.codes = out.data_ptr<int8_t>() + r0 * cols;
                else a.words = reinterpret_cast<uint32_t *>(out.data_ptr<int32_t>()) + r0 * packed_words(cols, w.num_bits);
                a.row_error = mean_squared_error ? row_error.data() : nullptr;
                if (int_pack_avx512_run(a, 0, n) == 0) {
                    std::memset(q.zero_point.data_ptr(), 0, q.zero_point.nbytes()); // symmetric: zeros
                    if (mean_squared_error) {
                        // As fused_rows_run and the sum below take them: rows in order, the mean,
                        // times the block's values.
                        double total = 0;
                        for (double r : row_error) total += r;
                        sums[static_cast<size_t>(b)] =
                            total / static_cast<double>(n * cols) * static_cast<double>(part.numel());
                    }
                    return true;
                }
            }
            if (!observe_rows_minmax(w, part, q.scale, q.zero_point)) {
                const qparams generic = qparams_observe(w, part, observed_role::weight);
                q.scale.copy_(generic.scale);
                q.zero_point.copy_(generic.zero_point);
            }
        } else if (!given) {
            q = qparams_observe(w, part, observed_role::weight);
        } else {
            q.scale = per_row ? given->scale.slice(0, r0, r1) : given->scale;
            if (given->zero_point.defined())
                q.zero_point = per_row ? given->zero_point.slice(0, r0, r1) : given->zero_point;
        }
        // A symmetric zero point is zero, and adding zero changes no INT code or error (a -0
        // quotient becomes +0, which packs and dequantizes the same): skip its steps. FP8 and
        // FP4 keep them: -0 and +0 have different codes.
        qparams packed{q.scale, w.symmetric && !fp8 && !fp4 ? at::Tensor() : q.zero_point, {}};
        if (band) {
            // The loops take a scale per row and group of bw columns (fused_group).
            packed.scale = spread_rows(packed.scale.contiguous(), band, r1 - r0, block, row_scale);
            if (packed.zero_point.defined())
                packed.zero_point =
                    spread_rows(packed.zero_point.contiguous(), band, r1 - r0, block, row_zero_point);
        }
        double e = 0;
        double *ep = mean_squared_error ? &e : nullptr;
        const at::Tensor slice = out.slice(0, r0, r1);
        const at::Tensor done = fp4 || fp8 ? codes_into(w, part, packed, ep, slice)
                                            : quantize_pack_into(w, part, packed, nullptr, ep, slice, int_codes);
        if (!done.defined()) return false;
        if (!given && !direct) {
            scales[static_cast<size_t>(b)] = q.scale;
            zero_points[static_cast<size_t>(b)] = q.zero_point;
        }
        sums[static_cast<size_t>(b)] = e * static_cast<double>(part.numel());
        return true;
    });
    if (!ok) return {};
    if (direct) {
        *observed = qparams{scale_all, zero_point_all, {}};
    } else if (!given) {
        *observed = qparams();
        observed->scale = at::cat(scales, 0);
        if (zero_points.front().defined()) observed->zero_point = at::cat(zero_points, 0);
    }
    if (mean_squared_error) {
        double total = 0;
        for (double e : sums) total += e;
        *mean_squared_error = total / static_cast<double>(rows * cols);
    }
    return out;
}

// Whether whole rows in blocks quantize as the weight does with these qparams: per row or one for
// all (not block strategy's), no g_idx or global scale.
bool blockwise_applies(const at::Tensor &weight, const qparams &qp, const at::Tensor *g_idx) {
    return !g_idx && weight.dim() == 2 && qp.scale.defined() && !qp.global_scale.defined() &&
           (qp.scale.numel() == 1 || (qp.scale.dim() == 2 && qp.scale.size(0) == weight.size(0)));
}

// observe_quantize_pack_int32's and observe_quantize_fp8_codes's common checks: static args of
// strategy channel, group (not regrouped by g_idx) or block observed by min/max, and a 2-D weight.
bool observe_blockwise_applies(const quant_args &w, const at::Tensor &weight) {
    if (w.is_dynamic() || weight.dim() != 2) return false;
    const quant_strategy s = *w.strategy;
    if (s != quant_strategy::channel && s != quant_strategy::group && s != quant_strategy::block) return false;
    if (w.actorder && canonical(*w.actorder) == actorder_kind::group) return false; // columns regrouped by g_idx
    if (observer(w, observed_role::weight).kind() != "memoryless_minmax") return false;
    const int64_t rows = weight.size(0), cols = weight.size(1);
    if (rows <= 0 || cols <= 0) return false;
    if (s == quant_strategy::group) return cols % w.group_size.value_or(0) == 0;
    // Blocks whose width divides the columns (the loops do not pad); bands of rows may end short.
    if (s == quant_strategy::block)
        return w.block_structure && (*w.block_structure)[0] > 0 && (*w.block_structure)[1] > 0 &&
               cols % (*w.block_structure)[1] == 0;
    return true;
}

} // namespace

at::Tensor quantize_pack_int32(const quant_args &w, const at::Tensor &weight, const qparams &qp,
                               const at::Tensor *g_idx, double *mean_squared_error, const row_reader &read) {
    if (read && blockwise_applies(weight, qp, g_idx)) {
        // Each block meets quantize_pack_into's checks in their per-block form, or none packs.
        if (at::Tensor r = pack_in_blocks(w, weight.contiguous(), &qp, read, nullptr, mean_squared_error); r.defined())
            return r;
    }
    return quantize_pack_into(w, weight, qp, g_idx, mean_squared_error, at::Tensor());
}

at::Tensor observe_quantize_pack_int32(const quant_args &w, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error, const row_reader &read) {
    if (w.type != quant_type::int_ || w.num_bits < 1 || w.num_bits > 8 || !observe_blockwise_applies(w, weight))
        return {};
    return pack_in_blocks(w, weight.contiguous(), nullptr, read, &qp, mean_squared_error);
}

at::Tensor quantize_int8_codes(const quant_args &w, const at::Tensor &weight, const qparams &qp,
                               double *mean_squared_error, const row_reader &read) {
    if (read && blockwise_applies(weight, qp, nullptr)) {
        if (at::Tensor r = pack_in_blocks(w, weight.contiguous(), &qp, read, nullptr, mean_squared_error, true);
            r.defined())
            return r;
    }
    return quantize_pack_into(w, weight, qp, nullptr, mean_squared_error, at::Tensor(), true);
}

at::Tensor observe_quantize_int8_codes(const quant_args &w, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error, const row_reader &read) {
    if (w.type != quant_type::int_ || w.num_bits < 1 || w.num_bits > 8 || !observe_blockwise_applies(w, weight))
        return {};
    return pack_in_blocks(w, weight.contiguous(), nullptr, read, &qp, mean_squared_error, true);
}

at::Tensor quantize_fp8_codes(const quant_args &w, const at::Tensor &weight, const qparams &qp,
                              double *mean_squared_error, const row_reader &read) {
    if (!w.is_fp8()) return {};
    // A block's scale serves bh rows and bw columns: repeated down its rows, the scales are one
    // per row and group of bw columns, which the loops take (fused_group).
    const qparams &q = *w.strategy == quant_strategy::block ? block_rows(w, weight, qp) : qp;
    if (!q.scale.defined()) return {};
    if (blockwise_applies(weight, q, nullptr)) {
        if (at::Tensor r = pack_in_blocks(w, weight.contiguous(), &q, read, nullptr, mean_squared_error); r.defined())
            return r;
    }
    return codes_into(w, weight, q, mean_squared_error, at::Tensor());
}

at::Tensor observe_quantize_fp8_codes(const quant_args &w, const at::Tensor &weight, qparams &qp,
                                      double *mean_squared_error, const row_reader &read) {
    if (!w.is_fp8() || !observe_blockwise_applies(w, weight)) return {};
    return pack_in_blocks(w, weight.contiguous(), nullptr, read, &qp, mean_squared_error);
}

at::Tensor observe_quantize_fp4_packed(const quant_args &w, const at::Tensor &weight, qparams &qp,
                                       double *mean_squared_error, const row_reader &read) {
    // tensor_group needs the whole tensor's (or its partners') global scale: not blockwise.
    if (!w.is_fp4() || *w.strategy != quant_strategy::group || !observe_blockwise_applies(w, weight)) return {};
    return pack_in_blocks(w, weight.contiguous(), nullptr, read, &qp, mean_squared_error);
}

at::Tensor quantize_fp4_packed(const quant_args &w, const at::Tensor &weight, const qparams &qp,
                               double *mean_squared_error, const row_reader &read) {
    if (!w.is_fp4() || weight.dim() != 2 || !qp.scale.defined()) return {};
    // quantize_values divides x by scale / global_scale: the same tensor op here, once.
    qparams divided;
    {
        serial_aten_ops small;
        divided = {qp.global_scale.defined() ? qp.scale / qp.global_scale : qp.scale, qp.zero_point, {}};
    }
    if (!blockwise_applies(weight, divided, nullptr)) return {};
    return pack_in_blocks(w, weight.contiguous(), &divided, read, nullptr, mean_squared_error);
}

} // namespace llmc::quant
