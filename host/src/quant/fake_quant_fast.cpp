#include "quant/fake_quant_fast.h"

#include "quant/float_round.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace llmc::quant {

namespace {

// The generic path's ops, one element at a time (x fp32, scale in T):
//   y = x / float(s) (+ float(zp)); clamp to [q_min, q_max]; round half to even  -- fp32
//   v = T(y); v = T(v - T(zp)); out = T(v * s)                                    -- in T
template <class T>
void run(const float *x, int64_t rows, int64_t cols, const T *s, int64_t s_stride, const int8_t *zp,
         int64_t zp_stride, float lo, float hi, T *out) {
    for (int64_t r = 0; r < rows; ++r) {
        const float sf = static_cast<float>(s[r * s_stride]);
        const float zf = zp ? static_cast<float>(zp[r * zp_stride]) : 0.0f; // int8: exact in T
        const float *xr = x + r * cols;
        T *o = out + r * cols;
        for (int64_t c = 0; c < cols; ++c) {
            float y = xr[c] / sf;
            if (zp) y = y + zf;
            y = y < lo ? lo : (y > hi ? hi : y); // NaN passes through, as at::clamp
            y = std::nearbyint(y);               // the default rounding mode: half to even
            float v = round_to<T>(y);
            if (zp) v = round_to<T>(v - zf);
            o[c] = T(v * sf);
        }
    }
}

// Group strategy, x [R, C] in X, scale [R, C/g] in S, computation dtype T = promote(X, S), the
// generic path's ops, one stage at a time over a group so that the loops vectorize:
//   y = T(x / s); y = T(y + X(zp)); clamp; round half to even    -- quantize, in T
//   v = S(y); v = S(v - zp); o = S(v * s); out = X(o)             -- dequantize in S, then x's dtype
// Returns false when a quotient is NaN: the generic path then decides (its NaN bits differ).
template <class X> inline void store(X *o, const float *f, int64_t n) {
    for (int64_t j = 0; j < n; ++j) o[j] = X(f[j]);
}
template <> inline void store<c10::BFloat16>(c10::BFloat16 *o, const float *f, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        uint32_t u;
        std::memcpy(&u, &f[j], 4);
        o[j].x = static_cast<uint16_t>(u >> 16); // f[j] is already a bf16 value
    }
}

// Rows [r0, r1); f is scratch for one group. Nonzero when a quotient is NaN.
// One value already rounded to X's precision, stored as X.
template <class X> inline void store_one(X *o, float v) { *o = X(v); }
template <> inline void store_one<c10::BFloat16>(c10::BFloat16 *o, float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    o->x = static_cast<uint16_t>(u >> 16);
}

template <class X, class S, class T>
LLMC_VECTOR_CLONES int run_group_rows(const X *x, int64_t r0, int64_t r1, int64_t cols, int64_t group, const S *s,
                                      const int8_t *zp, float lo, float hi, X *out, float *fp) {
    const int64_t groups = cols / group;
    int bad = 0;
    // Quantized integers of at most 8 bits are exact in every float dtype: rounding them to S
    // changes nothing, so the fused loop skips it.
    const bool exact = std::max(-lo, hi) <= 256.0f;
    if constexpr (fused_rounding<T> && fused_rounding<S> && fused_rounding<X>) {
        if (exact) {
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t g = 0; g < groups; ++g) {
                    const int64_t k = r * groups + g;
                    const float sf = to_float(s[k]);
                    const X *xi = x + r * cols + g * group;
                    X *o = out + r * cols + g * group;
                    if (zp) {
                        const float zf = static_cast<float>(zp[k]);
                        for (int64_t j = 0; j < group; ++j) {
                            float v = quantize_one<T>(to_float(xi[j]), sf, zf, true, lo, hi, bad);
                            v = dequantize_one<S, X>(v, sf, zf, true);
                            store_one(o + j, v);
                        }
                    } else {
                        for (int64_t j = 0; j < group; ++j) {
                            float v = quantize_one<T>(to_float(xi[j]), sf, 0.0f, false, lo, hi, bad);
                            v = dequantize_one<S, X>(v, sf, 0.0f, false);
                            store_one(o + j, v);
                        }
                    }
                }
            return bad;
        }
    }
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t k = r * groups + g;
            const float sf = to_float(s[k]);
            const float zf = zp ? static_cast<float>(zp[k]) : 0.0f; // int8: exact in every float dtype
            bad |= quantize_group<X, T>(x + r * cols + g * group, group, sf, zf, zp != nullptr, lo, hi, fp);
            for (int64_t j = 0; j < group; ++j) fp[j] = round_to_finite<S>(fp[j]);
            if (zp)
                for (int64_t j = 0; j < group; ++j) fp[j] = round_to_finite<S>(fp[j] - zf);
            for (int64_t j = 0; j < group; ++j) fp[j] = round_to_finite<X>(round_to_finite<S>(fp[j] * sf));
            store(out + r * cols + g * group, fp, group);
        }
    return bad;
}

template <class X, class S, class T>
bool run_groups(const X *x, int64_t rows, int64_t cols, int64_t group, const S *s, const int8_t *zp, float lo,
                float hi, X *out) {
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(cols, 1));
    std::atomic<bool> nan{false};
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> f(static_cast<size_t>(group));
        if (run_group_rows<X, S, T>(x, r0, r1, cols, group, s, zp, lo, hi, out, f.data())) nan = true;
    });
    return !nan;
}

at::Tensor fake_quantize_groups(const quant_args &a, const at::Tensor &x, const qparams &qp) {
    if (!a.group_size || *a.group_size <= 0 || x.dim() != 2 || !x.is_contiguous()) return {};
    const int64_t rows = x.size(0), cols = x.size(1), group = *a.group_size;
    if (cols % group != 0) return {};
    const at::Tensor &s = qp.scale, &z = qp.zero_point;
    if (s.dim() != 2 || s.size(0) != rows || s.size(1) != cols / group || !s.is_contiguous()) return {};
    if (z.defined() && (z.scalar_type() != at::kChar || z.sizes() != s.sizes() || !z.is_contiguous())) return {};
    auto is_float = [](at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; };
    const at::ScalarType xt = x.scalar_type(), st = s.scalar_type();
    if (!is_float(xt) || !is_float(st)) return {};
    const at::ScalarType ct = at::promote_types(xt, st);
    const auto range = quant_range(a);
    const float lo = static_cast<float>(range.first), hi = static_cast<float>(range.second);
    const int8_t *zp = z.defined() ? z.data_ptr<int8_t>() : nullptr;
    at::Tensor out = at::empty({rows, cols}, x.options());
    bool ok = true;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, xt, "fake_quantize_groups_x", [&] {
        using X = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, st, "fake_quantize_groups_s", [&] {
            using S = scalar_t;
            const X *xp = x.data_ptr<X>();
            const S *sp = s.data_ptr<S>();
            X *op = out.data_ptr<X>();
            if (ct == at::kFloat) ok = run_groups<X, S, float>(xp, rows, cols, group, sp, zp, lo, hi, op);
            else if (ct == at::kBFloat16)
                ok = run_groups<X, S, c10::BFloat16>(xp, rows, cols, group, sp, zp, lo, hi, op);
            else ok = run_groups<X, S, c10::Half>(xp, rows, cols, group, sp, zp, lo, hi, op);
        });
    });
    return ok ? out : at::Tensor();
}

} // namespace

at::Tensor fake_quantize_fast(const quant_args &a, const at::Tensor &x, const qparams &qp) {
    if (a.type != quant_type::int_ || !a.strategy) return {};
    const quant_strategy st = *a.strategy;
    if (st == quant_strategy::group) {
        if (qp.global_scale.defined() || !qp.scale.defined() || x.device().type() != at::kCPU) return {};
        return fake_quantize_groups(a, x, qp);
    }
    if (st != quant_strategy::tensor && st != quant_strategy::channel && st != quant_strategy::token) return {};
    if (qp.global_scale.defined() || !qp.scale.defined()) return {};
    if (x.scalar_type() != at::kFloat || x.dim() != 2 || !x.is_contiguous() || x.device().type() != at::kCPU)
        return {};
    const int64_t rows = x.size(0), cols = x.size(1);
    const at::Tensor &s = qp.scale, &z = qp.zero_point;
    if (s.dim() != 2 || s.size(0) != rows || s.size(1) != 1 || s.device().type() != at::kCPU) return {};
    if (z.defined() && (z.scalar_type() != at::kChar || z.dim() != 2 || z.size(0) != rows || z.size(1) != 1 ||
                        z.device().type() != at::kCPU))
        return {};
    const auto range = quant_range(a);
    const float lo = static_cast<float>(range.first), hi = static_cast<float>(range.second);
    const int8_t *zp = z.defined() ? z.data_ptr<int8_t>() : nullptr;
    const int64_t zs = z.defined() ? z.stride(0) : 0;
    at::Tensor out = at::empty({rows, cols}, x.options().dtype(s.scalar_type()));
    switch (s.scalar_type()) {
    case at::kFloat:
        run<float>(x.data_ptr<float>(), rows, cols, s.data_ptr<float>(), s.stride(0), zp, zs, lo, hi,
                   out.data_ptr<float>());
        break;
    case at::kBFloat16:
        run<c10::BFloat16>(x.data_ptr<float>(), rows, cols, s.data_ptr<c10::BFloat16>(), s.stride(0), zp, zs, lo,
                           hi, out.data_ptr<c10::BFloat16>());
        break;
    case at::kHalf:
        run<c10::Half>(x.data_ptr<float>(), rows, cols, s.data_ptr<c10::Half>(), s.stride(0), zp, zs, lo, hi,
                       out.data_ptr<c10::Half>());
        break;
    default: return {};
    }
    return out;
}

} // namespace llmc::quant
