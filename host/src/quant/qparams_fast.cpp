#include "quant/qparams_fast.h"

#include "quant/float_formats.h"
#include "quant/float_round.h"
#include "quant/minmax_fast.h"
#include "quant/qparams.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace llmc::quant {

namespace {

// 1 when a group's min or max is NaN or infinite. Integer ops, not comparisons: the callers'
// loops flag bad groups rather than return early, so that they vectorize.
LLMC_INLINE uint32_t non_finite(float mn, float mx) {
    uint32_t a, b;
    std::memcpy(&a, &mn, 4);
    std::memcpy(&b, &mx, 4);
    return (((a & 0x7F800000u) + 0x00800000u) | ((b & 0x7F800000u) + 0x00800000u)) >> 31;
}

// v, a value of X, stored as X (exact; bf16 by its top bits, without c10's NaN branch, so that
// the loops vectorize).
template <class X> LLMC_INLINE void store_exact(float v, X *out) {
    if constexpr (std::is_same<X, c10::BFloat16>::value) {
        uint32_t b;
        std::memcpy(&b, &v, 4);
        const uint16_t top = static_cast<uint16_t>(b >> 16);
        std::memcpy(out, &top, 2);
    } else {
        *out = static_cast<X>(v);
    }
}

// qparams_of_groups' symmetric scales (absmax / half_range in X, zero replaced by X's eps), in
// a loop the AVX clones vectorize: a weight has a group every 32 to 128 values, and the scalar
// loop took a third as long as the min/max pass before it. False at a min or max that is not
// finite.
template <class X>
LLMC_VECTOR_CLONES bool symmetric_scales(const X *mins, const X *maxs, int64_t n, float half_range, float eps_x,
                                         X *scale) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float mn = std::min(to_float(mins[i]), 0.0f), mx = std::max(to_float(maxs[i]), 0.0f);
        bad |= non_finite(mn, mx);
        const float s = round_to_finite<X>(std::max(-mn, mx) / half_range);
        store_exact(s == 0.0f ? eps_x : s, &scale[i]);
    }
    return !bad;
}

// qparams_from_minmax's steps for n groups' minima and maxima. X is the weight's dtype: min and
// max are of it, and so is every op's result until the zero point's int8 (zp null: a symmetric
// FP8 zero point, zeros the caller has written).
template <class X>
bool qparams_of_groups(const X *mins, const X *maxs, int64_t n, bool symmetric, float q_min, float q_max, float eps,
                       X *scale, int8_t *zp) {
    // bit_range is float32 in compressed-tensors; ATen divides float32 values by the scalar as a
    // float32 (bf16 values widened first, as div_scalar does).
    const float bit_range = q_max - q_min, half_range = static_cast<float>(static_cast<double>(bit_range) / 2);
    const float eps_x = round_to<X>(eps);
    if (symmetric) {
        if (zp) std::memset(zp, 0, static_cast<size_t>(n));
        return symmetric_scales(mins, maxs, n, half_range, eps_x, scale);
    }
    for (int64_t i = 0; i < n; ++i) {
        float mn = to_float(mins[i]), mx = to_float(maxs[i]);
        if (!std::isfinite(mn) || !std::isfinite(mx)) return false;
        // Zero is always in the range.
        mn = std::min(mn, 0.0f);
        mx = std::max(mx, 0.0f);
        // Asymmetric (symmetric args returned above): a zero range has no zero point.
        const float s = round_to<X>(round_to<X>(mx - mn) / bit_range);
        if (s == 0) return false;
        // q_min - min / scale in x's dtype, clamped, then round() and the int8 cast.
        float z = round_to<X>(q_min - round_to<X>(mn / s));
        z = std::nearbyint(std::min(std::max(z, q_min), q_max));
        scale[i] = X(s); // exact: s is a value of X
        if (zp) zp[i] = static_cast<int8_t>(z);
    }
    return true;
}

// qparams_from_minmax's steps for NVFP4 local scales, per group: min and max widened to include
// zero, absmax / 6 in float rounded to X (div_scalar), times the float32 global scale (the
// product promotes to float32), clamped to 448 and rounded onto the FP8 grid (round_to_dtype),
// zero replaced by `eps`. False at a min or max that is not finite.
template <class X>
LLMC_VECTOR_CLONES bool fp4_scales(const X *mins, const X *maxs, int64_t n, float global_scale, float eps,
                                   float *scale) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float mn = std::min(to_float(mins[i]), 0.0f), mx = std::max(to_float(maxs[i]), 0.0f);
        bad |= non_finite(mn, mx);
        const float s = std::min(global_scale * round_to_finite<X>(std::max(-mn, mx) / 6.0f), 448.0f);
        float grid;
        fp8_e4m3_encode_in_range(s, &grid);
        scale[i] = grid == 0.0f ? eps : grid;
    }
    return !bad;
}

// qparams_from_minmax's steps for MX scales, per group, for finite minima and maxima: absmax
// rounded to a power of two on X's bits (round_to_power_of_two), its exponent + 127 - off
// clamped to the E8M0 range [0, 255] (round_to_dtype uint8), 2^(e - 127) in float then X
// (e8m0_to_scale), never zero (2^-127 the least), so the generic path's zero-to-eps step changes
// nothing. A zero absmax has exponent -inf, so E8M0 0; one that rounds up past X's largest finite
// value has +inf, so 255 and an infinite scale, as the tensor ops give. False at a min or max
// that is not finite. Each select the results do not need is left out: with two more, GCC's
// if-conversion gave up and the AVX clones stayed scalar (~10 ns a group).
template <class X>
LLMC_VECTOR_CLONES bool mx_scales(const X *mins, const X *maxs, int64_t n, int off, X *scale) {
    constexpr bool bf16 = std::is_same<X, c10::BFloat16>::value;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float mn = std::min(to_float(mins[i]), 0.0f), mx = std::max(to_float(maxs[i]), 0.0f);
        bad |= non_finite(mn, mx);
        const float absmax = std::max(-mn, mx);
        uint32_t bits;
        std::memcpy(&bits, &absmax, 4);
        bits &= 0x7FFFFFFFu; // +0 for a zero group (-mn is -0 there), as abs() gives
        // X's bits + half of its mantissa's top bit's weight, mantissa masked off: X has 7 or 23
        // mantissa bits, and a bf16's bits are the float's top 16.
        const uint32_t p2 = bf16 ? ((bits >> 16) + (1u << 5)) << 16 & 0xFF800000u : (bits + (1u << 21)) & 0xFF800000u;
        const int exponent = static_cast<int>(p2 >> 23); // biased; 0 for zero, 255 for infinity
        int e = exponent - off; // below 0 where exponent is 0 (log2(0) = -inf): off is 2 or 8
        e = std::min(std::max(e, 0), 255); // E8M0's range
        e = exponent == 255 ? 255 : e;     // log2(inf) = inf: 255 whatever off
        // 2^(e - 127) as a float from its bits (2^-127 is the subnormal 0x00400000).
        const uint32_t pow_bits = e == 0 ? 0x00400000u : static_cast<uint32_t>(e) << 23;
        float v;
        std::memcpy(&v, &pow_bits, 4);
        store_exact(v, &scale[i]); // a power of two in X's range, or infinity
    }
    return !bad;
}

// observe_rows_minmax_applies but the observer's kind, which costs a map lookup or two.
bool args_apply(const quant_args &a, at::ScalarType x) {
    if (x != at::kFloat && x != at::kBFloat16) return false;
    if (a.dynamic != dynamic_kind::static_ || !a.strategy || is_mx(a)) return false;
    const bool int8_zp =
        a.type == quant_type::int_ && a.num_bits >= 1 && a.num_bits <= 8 && a.zp_dtype == dtype_id::int8;
    // A symmetric FP8 zero point: zeros rounded to FP8 by round_to_dtype, which returns float32.
    const bool fp8 = a.is_fp8() && a.symmetric && a.zp_dtype == dtype_id::float8_e4m3fn;
    if (!int8_zp && !fp8) return false;
    switch (*a.strategy) {
    case quant_strategy::channel: break;
    case quant_strategy::group:
        if (!a.group_size || *a.group_size <= 0) return false;
        break;
    case quant_strategy::block:
        if (!a.block_structure || (*a.block_structure)[0] <= 0 || (*a.block_structure)[1] <= 0) return false;
        break;
    default: return false;
    }
    if (a.actorder && canonical(*a.actorder) == actorder_kind::group) return false;
    const dtype_id xd = x == at::kFloat ? dtype_id::float32 : dtype_id::bfloat16;
    return !a.scale_dtype || *a.scale_dtype == xd;
}

// The blocks' or groups' minima and maxima of n rows, then their qparams.
template <class X>
bool observe_rows(const quant_args &a, const X *x, int64_t n, int64_t cols, X *scale, int8_t *zp) {
    const auto [q_min, q_max] = quant_range(a);
    const float eps = static_cast<float>(
        dtype_eps(std::is_same<X, float>::value ? dtype_id::float32 : dtype_id::bfloat16));
    int64_t count;
    std::vector<X> mins, maxs;
    if (*a.strategy == quant_strategy::block) {
        const int64_t bh = (*a.block_structure)[0], bw = (*a.block_structure)[1];
        count = (n + bh - 1) / bh * ((cols + bw - 1) / bw);
        mins.resize(static_cast<size_t>(count));
        maxs.resize(static_cast<size_t>(count));
        minmax_blocks_serial(x, n, cols, bh, bw, mins.data(), maxs.data());
    } else {
        // Groups of a row are contiguous, so the rows are n * groups rows of `group` values.
        const int64_t group = *a.strategy == quant_strategy::group ? *a.group_size : cols;
        count = n * (cols / group);
        mins.resize(static_cast<size_t>(count));
        maxs.resize(static_cast<size_t>(count));
        minmax_rows_serial(x, count, group, mins.data(), maxs.data());
    }
    return qparams_of_groups(mins.data(), maxs.data(), count, a.symmetric, static_cast<float>(q_min),
                             static_cast<float>(q_max), eps, scale, zp);
}

} // namespace

bool qparams_from_minmax_fp4(const quant_args &a, const at::Tensor &min, const at::Tensor &max,
                             const at::Tensor &global_scale, qparams &qp) {
    if (!a.is_fp4() || !a.symmetric || is_mx(a) || a.scale_dtype != dtype_id::float8_e4m3fn || !a.zp_dtype)
        return false;
    const at::ScalarType xt = min.scalar_type();
    if ((xt != at::kFloat && xt != at::kBFloat16) || max.scalar_type() != xt || min.sizes() != max.sizes() ||
        min.dim() == 0 || !min.is_contiguous() || !max.is_contiguous() || !min.device().is_cpu() ||
        !max.device().is_cpu())
        return false;
    // 1-D: a 0-dim global scale would not promote the product to float32.
    if (!global_scale.defined() || global_scale.dim() != 1 || global_scale.numel() != 1 ||
        global_scale.scalar_type() != at::kFloat || !global_scale.device().is_cpu())
        return false;
    const float gs = global_scale.item<float>();
    const float eps = static_cast<float>(dtype_eps(dtype_id::float8_e4m3fn));
    at::Tensor scale = at::empty(min.sizes(), min.options().dtype(at::kFloat));
    const bool ok = xt == at::kFloat ? fp4_scales(min.data_ptr<float>(), max.data_ptr<float>(), min.numel(), gs, eps,
                                                  scale.data_ptr<float>())
                                     : fp4_scales(min.data_ptr<c10::BFloat16>(), max.data_ptr<c10::BFloat16>(),
                                                  min.numel(), gs, eps, scale.data_ptr<float>());
    if (!ok) return false;
    // Zeros in x's dtype rounded to the zero point's: zeros of what that rounding returns.
    const at::Tensor zero = round_to_dtype(at::zeros({1}, min.options()), *a.zp_dtype, /*cast_back=*/false);
    qp = qparams{scale, at::zeros(min.sizes(), zero.options()), global_scale};
    return true;
}

bool qparams_from_minmax_mx(const quant_args &a, const at::Tensor &min, const at::Tensor &max, qparams &qp) {
    if (!is_mx(a) || !a.symmetric || !a.zp_dtype) return false;
    const at::ScalarType xt = min.scalar_type();
    if ((xt != at::kFloat && xt != at::kBFloat16) || max.scalar_type() != xt || min.sizes() != max.sizes() ||
        min.dim() == 0 || !min.is_contiguous() || !max.is_contiguous() || !min.device().is_cpu() ||
        !max.device().is_cpu())
        return false;
    const int off = a.num_bits == 4 ? 2 : 8; // floor(log2(type max)), as mx_scale_exponent
    at::Tensor scale = at::empty(min.sizes(), min.options());
    const bool ok = xt == at::kFloat ? mx_scales(min.data_ptr<float>(), max.data_ptr<float>(), min.numel(), off,
                                                 scale.data_ptr<float>())
                                     : mx_scales(min.data_ptr<c10::BFloat16>(), max.data_ptr<c10::BFloat16>(),
                                                 min.numel(), off, scale.data_ptr<c10::BFloat16>());
    if (!ok) return false;
    const at::Tensor zero = round_to_dtype(at::zeros({1}, min.options()), *a.zp_dtype, /*cast_back=*/false);
    qp = qparams{scale, at::zeros(min.sizes(), zero.options()), {}};
    return true;
}

bool observe_rows_minmax_applies(const quant_args &a, at::ScalarType x) {
    return args_apply(a, x) && observer(a, observed_role::weight).kind() == "memoryless_minmax";
}

bool observe_rows_minmax(const quant_args &a, const at::Tensor &rows, at::Tensor &scale, at::Tensor &zero_point) {
    const at::ScalarType xt = rows.scalar_type();
    // The caller has asked observe_rows_minmax_applies, observer kind included, once per weight.
    if (rows.dim() != 2 || !rows.is_contiguous() || !args_apply(a, xt)) return false;
    const int64_t n = rows.size(0), cols = rows.size(1);
    if (n == 0 || cols == 0) return false;
    int64_t count;
    if (*a.strategy == quant_strategy::block) {
        const int64_t bh = (*a.block_structure)[0], bw = (*a.block_structure)[1];
        count = (n + bh - 1) / bh * ((cols + bw - 1) / bw);
    } else {
        const int64_t group = *a.strategy == quant_strategy::group ? *a.group_size : cols;
        if (cols % group != 0) return false;
        count = n * (cols / group);
    }
    const bool int_zp = a.type == quant_type::int_;
    if (scale.scalar_type() != xt || zero_point.scalar_type() != (int_zp ? at::kChar : at::kFloat) ||
        !scale.is_contiguous() || !zero_point.is_contiguous() || scale.numel() != count ||
        zero_point.numel() != count)
        return false;
    int8_t *zp = nullptr;
    if (int_zp) zp = zero_point.data_ptr<int8_t>();
    else std::memset(zero_point.data_ptr(), 0, zero_point.nbytes()); // +0.0f
    if (xt == at::kFloat) return observe_rows(a, rows.data_ptr<float>(), n, cols, scale.data_ptr<float>(), zp);
    return observe_rows(a, rows.data_ptr<c10::BFloat16>(), n, cols, scale.data_ptr<c10::BFloat16>(), zp);
}

} // namespace llmc::quant
