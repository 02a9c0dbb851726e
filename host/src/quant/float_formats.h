// Small float formats over at::Tensor, without a float8 dtype (LibTorch 1.13 has none):
// FP8 E4M3FN and FP4 E2M1 as uint8 codes or as values rounded onto their grid, the MX E8M0 scale
// exponent, and the generic "round to dtype and back" step of compressed-tensors.
#pragma once

#include "quant/args.h"
#include "quant/float_round.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>

namespace llmc::quant {

constexpr double fp8_e4m3_max = 448.0;
constexpr double fp4_e2m1_max = 6.0;

// --- FP8 E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN, no inf ---

// Round to nearest even; |x| beyond 448 (inf included) saturates to ±448 (torch's cast is always
// preceded by a clamp in compressed-tensors, so this equals clamp-then-cast); NaN -> 0x7F with
// x's sign bit, as torch.
uint8_t fp8_e4m3_encode_value(float x);
float fp8_e4m3_decode_value(uint8_t code);

// The code of v, known to be in [-448, 448] (not NaN), round half to even, and in *grid the value
// the code stands for (v's sign kept, -0 included). Integer ops and selects only, so that a loop
// over it vectorizes; fp8_e4m3_encode_value is this after its NaN and saturation cases.
LLMC_INLINE uint8_t fp8_e4m3_encode_in_range(float v, float *grid) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    const uint32_t sign = bits & 0x80000000u, mag = bits & 0x7FFFFFFFu;
    float a;
    std::memcpy(&a, &mag, 4);
    // Normal (|v| >= 2^-6): keep 3 of the 23 mantissa bits, half to even; a carry moves into the
    // exponent, as it should. r is then (biased float exponent << 3 | mantissa).
    const uint32_t r = (mag + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20;
    // Below 2^-6 the grid is k * 2^-9: a * 512 is exact and the magic add rounds it half to even
    // (k == 8 is the smallest normal's code, 0x08, as it should be).
    const float k = (a * 512.0f + 12582912.0f) - 12582912.0f;
    const bool normal = mag >= (121u << 23);
    const uint32_t code = normal ? r - (120u << 3) : static_cast<uint32_t>(k);
    float g = k * (1.0f / 512.0f);
    uint32_t gbits;
    std::memcpy(&gbits, &g, 4);
    gbits = (normal ? r << 20 : gbits) | sign;
    std::memcpy(grid, &gbits, 4);
    return static_cast<uint8_t>(code | (sign >> 24));
}

// Any floating tensor (float64 goes through float32 first, as torch's cast) -> uint8 codes.
at::Tensor fp8_e4m3_encode(const at::Tensor &x);
at::Tensor fp8_e4m3_decode(const at::Tensor &codes, at::ScalarType dtype = at::kFloat);
// x.to(float8_e4m3fn).to(x.dtype) with saturation; any device.
at::Tensor fp8_e4m3_round(const at::Tensor &x);
// The same as a chain of tensor ops (frexp, the grid's step, round), which fp8_e4m3_round takes
// on other devices than the CPU; on the CPU it makes one vectorized pass (tests hold them equal).
at::Tensor fp8_e4m3_round_ops(const at::Tensor &x);

// --- FP4 E2M1: code = sign bit 3 | index into {0, .5, 1, 1.5, 2, 3, 4, 6} ---

// compressed-tensors' cast_to_fp4 thresholds on |x|; the sign bit is signbit(x), as
// pack_fp4_to_uint8 sets it (-0.0 -> code 8); NaN gives magnitude index 0. Encoding the output of
// fp4_e2m1_round gives the codes compressed-tensors packs.
uint8_t fp4_e2m1_encode_value(float x);
float fp4_e2m1_decode_value(uint8_t code);
at::Tensor fp4_e2m1_encode(const at::Tensor &x);
at::Tensor fp4_e2m1_decode(const at::Tensor &codes, at::ScalarType dtype = at::kFloat);
// cast_to_fp4 in x's dtype (NaN stays NaN); any device.
at::Tensor fp4_e2m1_round(const at::Tensor &x);

// --- MX (E8M0) scales ---

// Power-of-two rounding of compressed-tensors' round_to_power_2: add 2^(mantissa_bits-2) to the
// raw bits of x's dtype (bf16, fp16, fp32, fp64) and keep sign and exponent, so the value rounds
// up only when its mantissa fraction is >= 0.75.
at::Tensor round_to_power_of_two(const at::Tensor &x);
// 127 + floor(log2(rp2(absmax))) - off, off = 2 (FP4) or 8 (FP8), in absmax's dtype and not yet
// clamped (a zero absmax gives -inf; the uint8 scale_dtype rounding clamps it to 0).
at::Tensor mx_scale_exponent(const at::Tensor &absmax, int num_bits);
// 2^(e - 127) computed in float32 and cast to dtype (maybe_convert_from_mx_exp).
at::Tensor e8m0_to_scale(const at::Tensor &e, at::ScalarType dtype);
// The stored uint8: 127 + floor(log2(scale)) (compress_mx_scale).
at::Tensor e8m0_from_scale(const at::Tensor &scale);

// --- dtype rounding ---

// x.to(dtype).to(x.dtype); to(kBFloat16) / to(kHalf) are round-to-nearest-even in ATen.
at::Tensor round_to_bf16(const at::Tensor &x);
at::Tensor round_to_fp16(const at::Tensor &x);

// compressed-tensors round_to_quantized_type_dtype: floats are clamped to the dtype's range and
// cast, integers are clamped, rounded (half to even) and cast. With cast_back the result is cast
// back to x's dtype; without it the result has d's ATen dtype, except float8 dtypes, which come
// back as float32 tensors holding float8 values.
at::Tensor round_to_dtype(const at::Tensor &x, dtype_id d, bool cast_back = true);
// The ATen dtype that holds values of d (float32 for the float8 dtypes).
at::ScalarType holding_scalar_type(dtype_id d);

// LibTorch 1.13 has no CPU fp16 kernels for clamp, round, floor and log2 (PyTorch 2.x has, and
// computes them in float32). Runs f on a float32 copy of an fp16 CPU tensor and casts back, which
// gives the same values; other tensors go to f directly.
template <class F> at::Tensor fp16_safe(const at::Tensor &t, F f) {
    if (t.scalar_type() == at::kHalf && t.device().is_cpu()) return f(t.to(at::kFloat)).to(at::kHalf);
    return f(t);
}

} // namespace llmc::quant
