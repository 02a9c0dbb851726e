// quantize_pack's fused INT, FP4 and FP8 loops for their most common cases, written out in AVX-512
// intrinsics.
//
// INT: symmetric weights whose weight, scale and computation dtypes are all bf16 or all float,
// packed 4 or 8 bits to a word or stored as int8 values (W4A16, W8A16, W8A8 and their GPTQ
// exports). GCC vectorizes the portable loop too, but through a row of codes and a row of
// differences in memory, packed and summed in passes after it. Here each 16 values go from the
// weight to their packed codes and squared error in registers: one addition rounds half to even
// and leaves the code in the float's low bits, a 64-bit shift and vpmovqb pack nibbles, and a
// 4-bit code's dequantized value is looked up in the group's table of 16 (vpermps) instead of
// multiplied and rounded again. W4A16 with its error, bf16, in cache: 0.175 ns a value, against
// 0.245 for the previous version of this loop (round to integer, convert, multiply) and 0.39 for
// the portable loop. Observing the scales too (scale_out) adds ~0.03.
//
// Both are bit for bit the portable loops' words or codes, NaN verdicts and error sums (their
// lanes and order included); tests compare them.
#pragma once

#include <cstdint>

namespace llmc::quant {

struct int_pack_rows {
    const void *x = nullptr;       // [rows, cols] weight, bf16 or float
    const void *scale = nullptr;   // [rows, cols / group] (per_row) or one value; the weight's dtype
    bool bf16 = false;             // the dtype of x, scale and the computation
    int64_t cols = 0, group = 0;   // group divides cols; both multiples of 16
    bool per_row = false;
    int bits = 4;                  // 4 or 8
    float lo = 0, hi = 0, offset = 0; // the clamp range and the code's offset (int_pack_range)
    uint32_t *words = nullptr;     // [rows, cols * bits / 32] packed codes, or
    int8_t *codes = nullptr;       // [rows, cols] int8 values (quantize()'s)
    double *row_error = nullptr;   // optional: Σ (fake_quantize(x) - x)² per row
    // Observing too (memoryless min/max, symmetric): with scale_out set, each group's scale is
    // taken from its own values first, as qparams_of_groups' symmetric_scales takes it (absmax /
    // half_range rounded to x's dtype, zero replaced by eps, a value of that dtype) and written
    // to scale_out [rows, cols / group] in x's dtype; `scale` is not read, per_row must be set.
    void *scale_out = nullptr;
    float half_range = 0, eps = 0;
};

// Sets a's clamp range and code offset for signed `bits`-bit codes: [-2^(bits-1), 2^(bits-1) -
// 1], offset 2^(bits-1) (quantize_pack_range's).
void int_pack_range(int_pack_rows &a, int bits);

// Whether the loop serves `a`: the shape and width conditions above, and a CPU with AVX-512
// (F, BW, VL, DQ) while pack_avx512_enable has not switched it off.
bool int_pack_avx512_serves(const int_pack_rows &a);

// Rows [r0, r1) of `a`, which int_pack_avx512_serves; nonzero when a quotient is NaN, or when
// observing a group whose values are not all finite (which qparams_of_groups declines): the
// caller then takes the generic path for these rows, as for the portable loop.
int int_pack_avx512_run(const int_pack_rows &a, int64_t r0, int64_t r1);

// FP4 E2M1 (NVFP4, MXFP4): weight and scale each bf16 or float, computation in their promoted
// dtype, with or without a zero point, groups of a multiple of 16 columns; fp4_codes_range's
// codes two to a byte, NaN verdict and error sum, bit for bit. Each value's grid index is looked
// up by its exponent and top two mantissa bits (vpermt2d; a second table for values exactly on
// a threshold that rounds down), its grid value too (vpermps), and the codes never leave
// registers: the portable loop spreads the scales over the row first and goes through a row of
// codes and one of differences. NVFP4 (bf16 weights, groups of 16) with its error, in cache:
// 0.35 ns a value, against 0.40 when the index counted the seven thresholds by masked adds and
// 0.62 for the portable loop; the division is what is left.
struct fp4_pack_rows {
    const void *x = nullptr;     // [rows, cols] weight
    const void *scale = nullptr; // [rows, cols / group] (per_row) or one value: what x is divided by
    const float *zero_point = nullptr; // as `scale`, converted as quantize_values adds it; or null
    bool x_bf16 = false, scale_bf16 = false; // else float
    int64_t cols = 0, group = 0;
    bool per_row = false;
    uint8_t *out = nullptr;      // [rows, cols / 2]
    double *row_error = nullptr; // optional, as int_pack_rows'
};
bool fp4_pack_avx512_serves(const fp4_pack_rows &a);
int fp4_pack_avx512_run(const fp4_pack_rows &a, int64_t r0, int64_t r1);

// FP8 E4M3 (float-quantized: FP8, FP8_DYNAMIC): weight and scale each bf16 or float,
// computation in their promoted dtype, with or without a zero point, groups (channel, tensor or
// group) of a multiple of 16 columns; fp8_codes_range's codes, NaN verdict and error sum, bit for
// bit. fp8_e4m3_encode_in_range on 16 lanes, and each value's squared error summed in registers
// where the portable loop goes through a row of differences and a second pass; zero points that
// are all +0 (symmetric schemes store them) skip the roundings they cannot change. The 0.5B
// model's FP8_DYNAMIC weights, bf16, with their error (compress_module alone, channel scales
// observed too): 0.33 CPU s with the portable loop, 0.29 with this one adding the zero point as
// any other, 0.23 now.
struct fp8_pack_rows {
    const void *x = nullptr;     // [rows, cols] weight
    const void *scale = nullptr; // [rows, cols / group] (per_row) or one value
    const float *zero_point = nullptr; // as fp4_pack_rows'
    bool x_bf16 = false, scale_bf16 = false; // else float
    int64_t cols = 0, group = 0;
    bool per_row = false;
    uint8_t *out = nullptr;      // [rows, cols] codes
    double *row_error = nullptr; // optional, as int_pack_rows'
    bool error_in_x = false;     // the error's fake-quantized values in x's dtype (else the computation's)
};
bool fp8_pack_avx512_serves(const fp8_pack_rows &a);
int fp8_pack_avx512_run(const fp8_pack_rows &a, int64_t r0, int64_t r1);

// The loops are on by default; tests switch them off to compare with the portable loops.
// Returns the old setting.
bool pack_avx512_enable(bool on);
// Rows the loops have packed since the process started (tests check that they ran).
uint64_t int_pack_avx512_rows_run();
uint64_t fp4_pack_avx512_rows_run();
uint64_t fp8_pack_avx512_rows_run();

} // namespace llmc::quant
