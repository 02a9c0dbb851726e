#include "quant/float_formats.h"

#include "util/error.h"

#include <ATen/Parallel.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace llmc::quant {

namespace {

uint32_t float_bits(float x) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

const std::array<float, 256> &fp8_table() {
    static const std::array<float, 256> t = [] {
        std::array<float, 256> v{};
        for (int c = 0; c < 256; ++c) {
            const int e = (c >> 3) & 0xF, m = c & 7;
            float mag;
            if (e == 15 && m == 7) mag = std::numeric_limits<float>::quiet_NaN();
            else if (e == 0) mag = std::ldexp(static_cast<float>(m), -9); // subnormal: m * 2^-9
            else mag = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
            v[c] = (c & 0x80) ? std::copysign(mag, -1.0f) : mag;
        }
        return v;
    }();
    return t;
}

constexpr std::array<float, 8> fp4_grid = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// Applies f to every element on the CPU (as float32) and returns uint8 codes on x's device.
template <class F> at::Tensor map_to_codes(const at::Tensor &x, F f) {
    if (!x.is_floating_point())
        fail("expected a floating-point tensor to encode, got {}", c10::toString(x.scalar_type()));
    auto xf = x.to(at::kFloat).cpu().contiguous();
    auto out = at::empty(xf.sizes(), at::TensorOptions().dtype(at::kByte));
    const float *src = xf.data_ptr<float>();
    uint8_t *dst = out.data_ptr<uint8_t>();
    at::parallel_for(0, xf.numel(), 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = f(src[i]);
    });
    return out.to(x.device());
}

// Looks codes up in a table of values; works on any device.
at::Tensor lookup(const at::Tensor &codes, const float *table, int64_t n, at::ScalarType dtype) {
    if (codes.scalar_type() != at::kByte)
        fail("expected uint8 codes, got {}", c10::toString(codes.scalar_type()));
    auto lut = at::from_blob(const_cast<float *>(table), {n}, at::kFloat).clone().to(codes.device());
    return lut.index_select(0, codes.flatten().to(at::kLong)).view(codes.sizes()).to(dtype);
}

// round_minifloat's E4M3 case for n floats: |x| clamped to 448 onto the grid (sign kept, -0
// included), NaN kept. Integer ops and selects only, so that the loop vectorizes.
LLMC_VECTOR_CLONES void fp8_e4m3_round_span(const float *x, float *out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &x[i], 4);
        const uint32_t sign = bits & 0x80000000u, mag = bits & 0x7FFFFFFFu;
        float a;
        std::memcpy(&a, &mag, 4);
        a = std::min(a, 448.0f); // infinity saturates; a NaN is replaced below
        uint32_t clamped;
        std::memcpy(&clamped, &a, 4);
        clamped |= sign;
        float v, grid;
        std::memcpy(&v, &clamped, 4);
        fp8_e4m3_encode_in_range(v, &grid);
        uint32_t g;
        std::memcpy(&g, &grid, 4);
        g = mag > 0x7F800000u ? bits : g;
        std::memcpy(&out[i], &g, 4);
    }
}

// Rounds onto a float grid with `mant` mantissa bits, normal exponents emin..emax and largest
// value max_val (saturating), in float32, round half to even; any device. The step of the grid
// around |x| is 2^(exponent - mant), with the exponent held at emin in the subnormal range.
at::Tensor round_minifloat_ops(const at::Tensor &x, int mant, int emin, int emax, double max_val) {
    auto xf = x.to(at::kFloat);
    auto a = xf.abs().clamp_max(max_val); // clamping first is the same as saturating after
    auto exponent = std::get<1>(at::frexp(a)) - 1; // a = m * 2^e, m in [0.5, 1)
    auto ex = exponent.clamp(emin, emax);
    // 2^(ex - mant) built from its bits: exact, no pow().
    auto step = at::bitwise_left_shift((ex - mant + 127).to(at::kInt), 23).view(at::kFloat);
    auto q = at::round(a / step) * step;
    q = at::copysign(q, xf); // keeps -0.0 and the sign of small negatives
    return at::where(at::isnan(xf), xf, q);
}

// round_minifloat_ops, but E4M3 on the CPU in one pass (the ops cost ~80 ns a value: frexp).
at::Tensor round_minifloat(const at::Tensor &x, int mant, int emin, int emax, double max_val) {
    if (!x.device().is_cpu() || mant != 3 || emin != -6 || emax != 8 || max_val != fp8_e4m3_max)
        return round_minifloat_ops(x, mant, emin, emax, max_val);
    const at::Tensor xf = x.to(at::kFloat).contiguous();
    at::Tensor out = at::empty(xf.sizes(), xf.options());
    const float *src = xf.data_ptr<float>();
    float *dst = out.data_ptr<float>();
    at::parallel_for(0, xf.numel(), 1 << 16,
                     [&](int64_t b, int64_t e) { fp8_e4m3_round_span(src + b, dst + b, e - b); });
    return out;
}

// Clamps to [lo, hi] only where the bounds lie inside x's own range: ATen refuses scalars that
// overflow the tensor's dtype, and such a clamp would not change any finite value anyway.
at::Tensor clamp_into(const at::Tensor &x, double lo, double hi) {
    double src_max = std::numeric_limits<double>::max();
    switch (x.scalar_type()) {
    case at::kFloat: src_max = std::numeric_limits<float>::max(); break;
    case at::kBFloat16: src_max = 3.3895313892515355e38; break;
    case at::kHalf: src_max = 65504.0; break;
    default: break;
    }
    const bool clamp_lo = lo > -src_max, clamp_hi = hi < src_max;
    return fp16_safe(x, [&](const at::Tensor &t) {
        if (clamp_lo && clamp_hi) return at::clamp(t, lo, hi);
        if (clamp_lo) return at::clamp_min(t, lo);
        if (clamp_hi) return at::clamp_max(t, hi);
        return t;
    });
}

} // namespace

uint8_t fp8_e4m3_encode_value(float x) {
    const uint32_t bits = float_bits(x);
    const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return sign | 0x7F; // NaN
    if (std::fabs(x) >= 448.0f) return sign | 0x7E;             // saturate, inf included
    float grid;
    return fp8_e4m3_encode_in_range(x, &grid);
}

float fp8_e4m3_decode_value(uint8_t code) { return fp8_table()[code]; }

// fp8_e4m3_encode_value over a span, with its NaN and saturation cases as selects, so that the
// loop vectorizes (the scalar function's branches kept it at ~3 ns a value: NVFP4's scales).
static LLMC_VECTOR_CLONES void fp8_e4m3_encode_span(const float *x, uint8_t *codes, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &x[i], 4);
        const uint32_t mag = bits & 0x7FFFFFFFu;
        const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
        const bool nan = mag > 0x7F800000u, saturated = mag >= 0x43E00000u; // |x| >= 448, inf too
        float grid;
        const uint8_t code = fp8_e4m3_encode_in_range(nan || saturated ? 0.0f : x[i], &grid);
        const uint8_t special = static_cast<uint8_t>(sign | (nan ? 0x7F : 0x7E));
        codes[i] = nan || saturated ? special : code;
    }
}

at::Tensor fp8_e4m3_encode(const at::Tensor &x) {
    if (!x.is_floating_point())
        fail("expected a floating-point tensor to encode, got {}", c10::toString(x.scalar_type()));
    const at::Tensor xf = x.to(at::kFloat).cpu().contiguous();
    at::Tensor out = at::empty(xf.sizes(), at::TensorOptions().dtype(at::kByte));
    const float *src = xf.data_ptr<float>();
    uint8_t *dst = out.data_ptr<uint8_t>();
    at::parallel_for(0, xf.numel(), 1 << 16,
                     [&](int64_t b, int64_t e) { fp8_e4m3_encode_span(src + b, dst + b, e - b); });
    return out.to(x.device());
}

at::Tensor fp8_e4m3_decode(const at::Tensor &codes, at::ScalarType dtype) {
    return lookup(codes, fp8_table().data(), 256, dtype);
}

at::Tensor fp8_e4m3_round(const at::Tensor &x) {
    return round_minifloat(x, 3, -6, 8, fp8_e4m3_max).to(x.scalar_type());
}

at::Tensor fp8_e4m3_round_ops(const at::Tensor &x) {
    return round_minifloat_ops(x, 3, -6, 8, fp8_e4m3_max).to(x.scalar_type());
}

uint8_t fp4_e2m1_encode_value(float x) {
    const uint8_t sign = std::signbit(x) ? 8 : 0;
    if (std::isnan(x)) return sign;
    const float a = std::fabs(x);
    uint8_t idx;
    if (a <= 0.25f) idx = 0;
    else if (a < 0.75f) idx = 1;
    else if (a <= 1.25f) idx = 2;
    else if (a < 1.75f) idx = 3;
    else if (a <= 2.5f) idx = 4;
    else if (a < 3.5f) idx = 5;
    else if (a <= 5.0f) idx = 6;
    else idx = 7;
    // As pack_fp4_to_uint8: the sign bit is signbit(x), so the -0.0 that cast_to_fp4 gives a
    // small negative value is stored as code 8.
    return static_cast<uint8_t>(sign | idx);
}

float fp4_e2m1_decode_value(uint8_t code) {
    const float v = fp4_grid[code & 7];
    return (code & 8) ? -v : v;
}

at::Tensor fp4_e2m1_encode(const at::Tensor &x) { return map_to_codes(x, fp4_e2m1_encode_value); }

at::Tensor fp4_e2m1_decode(const at::Tensor &codes, at::ScalarType dtype) {
    static const std::array<float, 16> table = [] {
        std::array<float, 16> t{};
        for (int c = 0; c < 16; ++c) t[c] = fp4_e2m1_decode_value(static_cast<uint8_t>(c));
        return t;
    }();
    if (codes.numel() > 0 && codes.max().item<int>() > 15)
        fail("FP4 codes must be in 0..15, got {}", codes.max().item<int>());
    return lookup(codes, table.data(), 16, dtype);
}

at::Tensor fp4_e2m1_round(const at::Tensor &x) {
    auto a = x.abs();
    auto q = at::zeros_like(a);
    // Thresholds in increasing order; each later one overrides: ties go to the even mantissa.
    q.masked_fill_(a > 0.25, 0.5);
    q.masked_fill_(a >= 0.75, 1.0);
    q.masked_fill_(a > 1.25, 1.5);
    q.masked_fill_(a >= 1.75, 2.0);
    q.masked_fill_(a > 2.5, 3.0);
    q.masked_fill_(a >= 3.5, 4.0);
    q.masked_fill_(a > 5.0, 6.0);
    q = at::where(x < 0, -q, q);
    return at::where(at::isnan(x), x, q);
}

at::Tensor round_to_power_of_two(const at::Tensor &x) {
    switch (x.scalar_type()) {
    case at::kBFloat16: { // 7 mantissa bits
        auto b = x.view(at::kShort).to(at::kInt);
        return at::bitwise_and(b + (1 << 5), 0xFF80).to(at::kShort).view(at::kBFloat16);
    }
    case at::kHalf: { // 10 mantissa bits, 5 exponent bits
        auto b = x.view(at::kShort).to(at::kInt);
        return at::bitwise_and(b + (1 << 8), 0xFC00).to(at::kShort).view(at::kHalf);
    }
    case at::kFloat: { // 23 mantissa bits
        auto b = x.view(at::kInt).to(at::kLong);
        return at::bitwise_and(b + (int64_t{1} << 21), int64_t{0xFF800000})
            .to(at::kInt)
            .view(at::kFloat);
    }
    case at::kDouble: { // 52 mantissa bits
        auto b = x.view(at::kLong);
        const auto mask = static_cast<int64_t>(0xFFF0000000000000ULL);
        return at::bitwise_and(b + (int64_t{1} << 50), mask).view(at::kDouble);
    }
    default:
        fail("MX scales need a bfloat16, float16, float32 or float64 absmax, got {}",
             c10::toString(x.scalar_type()));
    }
}

at::Tensor mx_scale_exponent(const at::Tensor &absmax, int num_bits) {
    // floor(log2(type max)): FP4 E2M1 6 -> 2, FP8 E4M3 448 -> 8.
    int off;
    if (num_bits == 4) off = 2;
    else if (num_bits == 8) off = 8;
    else fail("MX scales exist for 4- and 8-bit floats, got {} bits", num_bits);
    auto p2 = round_to_power_of_two(absmax);
    return (fp16_safe(p2, [](const at::Tensor &t) { return at::floor(at::log2(t)); }) + 127) - off;
}

at::Tensor e8m0_to_scale(const at::Tensor &e, at::ScalarType dtype) {
    return at::pow(2.0, (e.to(at::kInt) - 127).to(at::kFloat)).to(dtype);
}

at::Tensor e8m0_from_scale(const at::Tensor &scale) {
    auto e = fp16_safe(scale, [](const at::Tensor &t) { return at::floor(at::log2(t)); });
    return (e.to(at::kInt) + 127).to(at::kByte);
}

at::Tensor round_to_bf16(const at::Tensor &x) {
    return x.to(at::kBFloat16).to(x.scalar_type());
}

at::Tensor round_to_fp16(const at::Tensor &x) { return x.to(at::kHalf).to(x.scalar_type()); }

at::ScalarType holding_scalar_type(dtype_id d) {
    switch (d) {
    case dtype_id::float64: return at::kDouble;
    case dtype_id::float32: return at::kFloat;
    case dtype_id::float16: return at::kHalf;
    case dtype_id::bfloat16: return at::kBFloat16;
    case dtype_id::float8_e4m3fn:
    case dtype_id::float8_e5m2: return at::kFloat;
    case dtype_id::int64: return at::kLong;
    case dtype_id::int32: return at::kInt;
    case dtype_id::int16: return at::kShort;
    case dtype_id::int8: return at::kChar;
    case dtype_id::uint8: return at::kByte;
    }
    fail("internal: unknown dtype id {}", static_cast<int>(d));
}

at::Tensor round_to_dtype(const at::Tensor &x, dtype_id d, bool cast_back) {
    const auto original = x.scalar_type();
    auto t = clamp_into(x, dtype_min(d), dtype_max(d));
    at::Tensor r;
    if (d == dtype_id::float8_e4m3fn) r = round_minifloat(t, 3, -6, 8, 448.0);
    else if (d == dtype_id::float8_e5m2) r = round_minifloat(t, 2, -14, 15, 57344.0);
    else if (is_floating(d)) r = t.to(holding_scalar_type(d));
    else r = fp16_safe(t, [](const at::Tensor &v) { return at::round(v); }).to(holding_scalar_type(d));
    return cast_back ? r.to(original) : r;
}

} // namespace llmc::quant
