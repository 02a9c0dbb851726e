#include "quant/qparams.h"

#include "quant/fake_quant_fast.h"
#include "quant/float_formats.h"
#include "quant/minmax_fast.h"
#include "quant/qparams_fast.h"
#include "util/error.h"

#include <spdlog/spdlog.h>

#include <c10/util/Half.h>

#include <cmath>
#include <limits>

namespace llmc::quant {

namespace {

bool is_reduced(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

// tensor op Python-scalar as PyTorch 2.x runs it: bf16/fp16 compute in float32 with the scalar
// rounded to float32, then round once (ATen 1.13 would round the scalar to bf16 first).
at::Tensor mul_scalar(const at::Tensor &t, double s) {
    if (!is_reduced(t.scalar_type())) return t * s;
    return (t.to(at::kFloat) * static_cast<double>(static_cast<float>(s))).to(t.scalar_type());
}

at::Tensor div_scalar(const at::Tensor &t, double s) {
    if (!is_reduced(t.scalar_type())) return t / s;
    return (t.to(at::kFloat) / static_cast<double>(static_cast<float>(s))).to(t.scalar_type());
}

// Tensor.pow(Python float) as PyTorch 2.x: bf16 takes the exponent as float32, fp16 as fp16.
at::Tensor pow_scalar(const at::Tensor &t, double e) {
    if (t.scalar_type() == at::kBFloat16)
        return t.to(at::kFloat).pow(static_cast<double>(static_cast<float>(e))).to(t.scalar_type());
    if (t.scalar_type() == at::kHalf)
        return t.to(at::kFloat)
            .pow(static_cast<double>(static_cast<float>(c10::Half(static_cast<float>(e)))))
            .to(t.scalar_type());
    return t.pow(e);
}

double float_max(at::ScalarType t) {
    switch (t) {
    case at::kBFloat16: return 3.3895313892515355e38;
    case at::kHalf: return 65504.0;
    case at::kFloat: return std::numeric_limits<float>::max();
    default: return std::numeric_limits<double>::max();
    }
}

dtype_id dtype_of(at::ScalarType t) {
    switch (t) {
    case at::kDouble: return dtype_id::float64;
    case at::kFloat: return dtype_id::float32;
    case at::kHalf: return dtype_id::float16;
    case at::kBFloat16: return dtype_id::bfloat16;
    case at::kLong: return dtype_id::int64;
    case at::kInt: return dtype_id::int32;
    case at::kShort: return dtype_id::int16;
    case at::kChar: return dtype_id::int8;
    case at::kByte: return dtype_id::uint8;
    default: fail("unsupported scale dtype {}", c10::toString(t));
    }
}

void require_validated(const quant_args &a) {
    if (!a.strategy || !a.zp_dtype)
        fail("internal: quantization args must go through validate_args before use");
}

bool is_group_like(const quant_args &a) {
    return a.strategy == quant_strategy::group || a.strategy == quant_strategy::tensor_group;
}

// compressed-tensors keeps q_min/q_max as 0-d float32 tensors; clamping with them (rather than
// with Scalars) reproduces its type promotion and never fails on out-of-range bounds.
at::Tensor clamp_to_range(const quant_args &a, const at::Tensor &t) {
    const auto [lo, hi] = quant_range(a);
    auto opts = t.options().dtype(at::kFloat);
    return fp16_safe(t, [&](const at::Tensor &v) {
        return at::clamp(v, at::scalar_tensor(lo, opts), at::scalar_tensor(hi, opts));
    });
}

// g_idx is used only when initialized: defined, non-empty and without -1.
bool valid_g_idx(const at::Tensor *g_idx) {
    return g_idx && g_idx->defined() && g_idx->numel() > 0 && !(*g_idx == -1).any().item<bool>();
}

at::Tensor argsort_stable(const at::Tensor &t) {
    return std::get<1>(at::sort(t, /*stable=*/true, /*dim=*/-1, /*descending=*/false));
}

// Zero-pads a 2-D tensor to multiples of the block (maybe_pad_tensor_for_block_quant).
at::Tensor pad_to_blocks(const at::Tensor &x, int64_t bh, int64_t bw) {
    const int64_t pr = (bh - x.size(0) % bh) % bh, pc = (bw - x.size(1) % bw) % bw;
    if (pr == 0 && pc == 0) return x;
    return at::constant_pad_nd(x, {0, pc, 0, pr}, 0);
}

void require_2d(const at::Tensor &x, const char *what) {
    if (x.dim() != 2) fail("{} needs a 2-D tensor, got {} dimensions", what, x.dim());
}

// x grouped as (..., columns/g, g).
at::Tensor split_groups(const at::Tensor &x, int64_t g) {
    const int64_t columns = x.size(-1);
    if (columns % g != 0)
        fail("group_size {} must divide the tensor's {} columns", g, columns);
    auto shape = x.sizes().vec();
    shape.back() = columns / g;
    shape.push_back(g);
    return x.reshape(shape);
}

// _quantize: x / (scale / global_scale) + zp, clamped, rounded to the type's grid; the result
// stays in the computation dtype.
at::Tensor quantize_values(const quant_args &a, const at::Tensor &x, const at::Tensor &scale,
                           const at::Tensor &zp, const at::Tensor &gs) {
    const auto s = gs.defined() ? scale / gs : scale;
    auto scaled = x / s;
    if (zp.defined()) scaled = scaled + zp.to(x.scalar_type()); // in place in the reference
    auto c = clamp_to_range(a, scaled);
    if (a.type == quant_type::int_) return fp16_safe(c, [](const at::Tensor &v) { return at::round(v); });
    if (a.num_bits == 8) return fp8_e4m3_round(c);
    return fp4_e2m1_round(c);
}

// _dequantize: (x_q - zp) * (scale / global_scale) in the scale's dtype.
at::Tensor dequantize_values(const at::Tensor &q, const at::Tensor &scale, const at::Tensor &zp,
                             const at::Tensor &gs) {
    const auto s = gs.defined() ? scale / gs : scale;
    auto v = q.to(s.scalar_type());
    if (zp.defined()) v = v - zp.to(s.scalar_type());
    return v * s;
}

// _process_quantization: lays x out per strategy, then quantizes and/or dequantizes.
at::Tensor process(const quant_args &a, at::Tensor x, const qparams &qp, const at::Tensor *g_idx,
                   bool do_quantize, bool do_dequantize, std::optional<at::ScalarType> dtype) {
    require_validated(a);
    if (!qp.scale.defined()) fail("quantization needs a scale");
    at::Tensor scale = qp.scale, zp = qp.zero_point;
    const at::Tensor &gs = qp.global_scale;
    auto run = [&](const at::Tensor &v, const at::Tensor &s, const at::Tensor &z) {
        at::Tensor out = v;
        if (do_quantize) out = quantize_values(a, out, s, z, gs);
        if (do_dequantize) out = dequantize_values(out, s, z, gs);
        return out;
    };
    auto unsq = [](const at::Tensor &t) { return t.defined() ? t.unsqueeze(-1) : t; };

    if (a.strategy == quant_strategy::block) {
        require_2d(x, "block quantization");
        const int64_t bh = (*a.block_structure)[0], bw = (*a.block_structure)[1];
        const int64_t rows = x.size(0), cols = x.size(1);
        auto padded = pad_to_blocks(x, bh, bw);
        const int64_t rb = padded.size(0) / bh, cb = padded.size(1) / bw;
        if (scale.dim() != 2 || scale.size(0) != rb || scale.size(1) != cb)
            fail("block scale must have shape [{}, {}], got {}", rb, cb, c10::str(scale.sizes()));
        auto blocks = padded.reshape({rb, bh, cb, bw}).transpose(1, 2);
        auto out = run(blocks, unsq(unsq(scale)), unsq(unsq(zp)));
        out = out.transpose(1, 2).reshape({rb * bh, cb * bw});
        return out.slice(0, 0, rows).slice(1, 0, cols);
    }

    if (is_group_like(a)) {
        const auto output_dtype = dtype ? *dtype : x.scalar_type();
        while (scale.dim() < 2) {
            scale = scale.unsqueeze(1);
            if (zp.defined()) zp = zp.unsqueeze(1);
        }
        const bool permuted = valid_g_idx(g_idx);
        at::Tensor perm;
        if (permuted) {
            perm = argsort_stable(*g_idx);
            x = x.index_select(-1, perm);
        }
        auto out = run(split_groups(x, *a.group_size), unsq(scale), unsq(zp));
        out = out.flatten(-2).to(output_dtype);
        if (permuted) out = out.index_select(-1, argsort_stable(perm));
        return out;
    }

    // tensor, channel, token, attn_head: qparams broadcast against x.
    return run(x, scale, zp);
}

mse_options mse_options_from(const nlohmann::json &kw, mse_options o) {
    auto num = [&](const char *k, double &dst) {
        if (kw.contains(k) && kw[k].is_number()) dst = kw[k].get<double>();
    };
    num("maxshrink", o.maxshrink);
    num("grid", o.grid);
    num("norm", o.norm);
    num("expand", o.expand);
    if (kw.contains("patience") && kw["patience"].is_number())
        o.patience = static_cast<int>(kw["patience"].get<double>());
    return o;
}

} // namespace

std::pair<double, double> quant_range(const quant_args &a) {
    if (a.type == quant_type::int_)
        return {-std::ldexp(1.0, a.num_bits - 1), std::ldexp(1.0, a.num_bits - 1) - 1.0};
    if (a.num_bits == 8) return {-fp8_e4m3_max, fp8_e4m3_max};
    if (a.num_bits == 4) return {-fp4_e2m1_max, fp4_e2m1_max};
    fail("range calculation is only supported for 4- and 8-bit floats, got {} bits", a.num_bits);
}

bool is_mx(const quant_args &a) {
    return a.type == quant_type::float_ && (a.num_bits == 4 || a.num_bits == 8) &&
           a.group_size == 32 && a.scale_dtype == dtype_id::uint8;
}

at::ScalarType registered_scale_dtype(at::ScalarType observed) {
    if (observed == at::kHalf || observed == at::kBFloat16 || observed == at::kFloat ||
        observed == at::kDouble)
        return observed;
    return at::kHalf;
}

at::Tensor global_scale_for(const at::Tensor &absmax_in) {
    if (absmax_in.numel() == 0) fail("global scale of an empty tensor");
    auto absmax = absmax_in.numel() == 1 ? absmax_in.reshape({}) : absmax_in.amax();
    absmax = fp16_safe(absmax, [](const at::Tensor &v) {
        return at::clamp_min(v, static_cast<double>(std::numeric_limits<float>::min()));
    });
    // `448 * 6 / absmax` in PyTorch is Tensor.__rtruediv__: reciprocal, then a scalar multiply.
    auto gs = mul_scalar(at::reciprocal(absmax), fp8_e4m3_max * fp4_e2m1_max).to(at::kFloat);
    gs = at::where(at::isfinite(gs), gs, at::ones_like(gs));
    return gs.reshape({1});
}

at::Tensor global_scale_from_minmax(const at::Tensor &min, const at::Tensor &max) {
    auto mn = at::minimum(min, at::zeros_like(min));
    auto mx = at::maximum(max, at::zeros_like(max));
    return global_scale_for(at::maximum(mn.abs(), mx.abs()));
}

qparams qparams_from_minmax(const quant_args &a, at::Tensor min, at::Tensor max,
                            const at::Tensor *global_scale) {
    require_validated(a);
    qparams fast;
    if (global_scale && global_scale->defined() ? qparams_from_minmax_fp4(a, min, max, *global_scale, fast)
                                                : qparams_from_minmax_mx(a, min, max, fast))
        return fast;
    // Zero must always be representable.
    min = at::minimum(min, at::zeros_like(min));
    max = at::maximum(max, at::zeros_like(max));

    const auto [q_min, q_max] = quant_range(a);
    // bit_range is a float32 tensor in compressed-tensors; float(bit_range) / 2 a Python float.
    const double bit_range = static_cast<float>(q_max - q_min);

    at::Tensor scale, zp;
    if (a.symmetric) {
        auto absmax = at::maximum(min.abs(), max.abs());
        if (is_mx(a)) scale = mx_scale_exponent(absmax, a.num_bits);
        else scale = div_scalar(absmax, bit_range / 2);
        zp = at::zeros(scale.sizes(), min.options());
    } else {
        if (a.is_fp4()) fail("asymmetric quantization is not supported for FP4");
        scale = div_scalar(max - min, bit_range);
        auto opts = min.options().dtype(at::kFloat);
        zp = at::scalar_tensor(q_min, opts) - min / scale;
        zp = fp16_safe(zp, [&](const at::Tensor &v) {
            return at::clamp(v, at::scalar_tensor(q_min, opts), at::scalar_tensor(q_max, opts));
        });
    }

    if (global_scale && global_scale->defined()) scale = *global_scale * scale;
    if (a.scale_dtype) scale = round_to_dtype(scale, *a.scale_dtype, /*cast_back=*/true);
    if (is_mx(a)) scale = e8m0_to_scale(scale, scale.scalar_type());

    const double eps = dtype_eps(a.scale_dtype ? *a.scale_dtype : dtype_of(scale.scalar_type()));
    scale = at::where(scale == 0, at::scalar_tensor(eps, scale.options()), scale);
    zp = round_to_dtype(zp, *a.zp_dtype, /*cast_back=*/false);

    if (scale.dim() == 0) {
        scale = scale.reshape({1});
        zp = zp.reshape({1});
    }
    qparams qp{scale, zp, {}};
    if (global_scale && global_scale->defined()) qp.global_scale = *global_scale;
    return qp;
}

at::Tensor flatten_for_calibration(const quant_args &a, const at::Tensor &x_in, observed_role role,
                                   const at::Tensor *g_idx) {
    require_validated(a);
    const auto s = *a.strategy;
    auto bad = [&](const char *what) -> at::Tensor {
        fail("{} quantization cannot be applied to {}", to_string(s), what);
    };
    at::Tensor x = x_in;
    switch (role) {
    case observed_role::weight:
        switch (s) {
        case quant_strategy::tensor: return x.reshape({1, 1, -1});
        case quant_strategy::channel: return x.unsqueeze(-2).unsqueeze(0);
        case quant_strategy::group:
        case quant_strategy::tensor_group:
            if (valid_g_idx(g_idx)) x = x.index_select(-1, argsort_stable(*g_idx));
            return split_groups(x, *a.group_size).unsqueeze(0);
        case quant_strategy::block: {
            require_2d(x, "block quantization");
            const int64_t bh = (*a.block_structure)[0], bw = (*a.block_structure)[1];
            auto p = pad_to_blocks(x, bh, bw);
            const int64_t rb = p.size(0) / bh, cb = p.size(1) / bw;
            return p.reshape({rb, bh, cb, bw}).transpose(1, 2).reshape({rb, cb, bh * bw}).unsqueeze(0);
        }
        default: return bad("weights");
        }
    case observed_role::activation:
        switch (s) {
        case quant_strategy::tensor: return x.reshape({-1, 1, x.size(-1)});
        case quant_strategy::token: return x;
        case quant_strategy::group:
        case quant_strategy::tensor_group:
            return split_groups(x.reshape({-1, x.size(-1)}), *a.group_size);
        default: return bad("activations");
        }
    case observed_role::attention:
        if (x.dim() != 4)
            fail("attention states must be [batch, heads, seq, head_dim], got {} dimensions",
                 x.dim());
        switch (s) {
        case quant_strategy::tensor:
            return x.transpose(1, 2).flatten(0, 1).flatten(-2, -1).unsqueeze(-2);
        case quant_strategy::attn_head:
            return x.transpose(1, 2).flatten(0, 1).unsqueeze(-2).unsqueeze(-2);
        default: return bad("attention");
        }
    }
    return bad("this value");
}

std::pair<at::Tensor, at::Tensor> mse_min_max(const quant_args &args, const at::Tensor &flat,
                                              const mse_options &o, const at::Tensor *importance) {
    require_validated(args);
    quant_args search = args;
    if (args.strategy == quant_strategy::tensor_group) search.scale_dtype.reset();
    // The candidates are applied per qparam by broadcasting, as with the TOKEN strategy.
    quant_args token = search;
    token.strategy = quant_strategy::token;

    const auto min0 = mul_scalar(at::amin(flat, {0, -1}), o.expand);
    const auto max0 = mul_scalar(at::amax(flat, {0, -1}), o.expand);
    auto best_err = at::full_like(min0, float_max(min0.scalar_type()));
    auto best_min = min0.clone(), best_max = max0.clone();

    // Python int(): truncation. imatrix_mse runs shrink_steps + 1 candidates.
    const auto truncated = static_cast<int64_t>(o.maxshrink * o.grid);
    const int64_t steps = o.imatrix_grid ? std::max<int64_t>(1, truncated) + 1 : truncated;
    if (o.imatrix_grid) best_err = at::full(min0.sizes(), float_max(at::kFloat), min0.options().dtype(at::kFloat));
    const at::Tensor flat_f = o.imatrix_grid ? flat.to(at::kFloat) : at::Tensor();
    int no_improve = 0;
    for (int64_t i = 0; i < steps; ++i) {
        const double p = 1.0 - static_cast<double>(i) / o.grid;
        const auto smin = mul_scalar(min0, p), smax = mul_scalar(max0, p);
        const auto qp = qparams_from_minmax(search, smin, smax, nullptr);
        const qparams cand{qp.scale.unsqueeze(-1), qp.zero_point.unsqueeze(-1), {}};
        const auto q = fake_quantize(token, flat, cand).to(flat.scalar_type());
        at::Tensor err;
        if (o.imatrix_grid) {
            // The reference: fake_quantize(...).float(), then |q - x|^norm (· importance) in fp32.
            at::Tensor e = pow_scalar((q.to(at::kFloat) - flat_f).abs(), o.norm);
            if (importance != nullptr) e = e * *importance;
            err = at::sum(e, at::IntArrayRef{0, -1});
        } else {
            const auto e = pow_scalar((q - flat).abs(), o.norm);
            err = at::sum(e.to(at::kFloat), at::IntArrayRef{0, -1}).to(e.scalar_type());
        }
        const auto improved = err < best_err;
        if (improved.any().item<bool>()) {
            best_err = at::where(improved, err, best_err);
            best_min = at::where(improved, smin, best_min);
            best_max = at::where(improved, smax, best_max);
            no_improve = 0;
        } else if (++no_improve >= o.patience && (!o.imatrix_grid || o.patience > 0)) {
            break;
        }
    }
    return {best_min, best_max};
}

// --- observer ---

observer::observer(const quant_args &args, observed_role role) : args_(args), role_(role) {
    require_validated(args_);
    if (!args_.observer)
        fail("fully dynamic quantization args have no observer (their qparams are computed at "
             "runtime)");
    kind_ = *args_.observer;
    // Weights are observed once, so llm-compressor swaps in the memoryless variants.
    if (role_ == observed_role::weight) {
        if (kind_ == "minmax" || kind_ == "static_minmax") kind_ = "memoryless_minmax";
        else if (kind_ == "mse") kind_ = "memoryless_mse";
    }
    const auto &kw = args_.observer_kwargs;
    if (kw.contains("averaging_constant") && kw["averaging_constant"].is_number())
        averaging_constant_ = kw["averaging_constant"].get<double>();

    if (kind_ == "memoryless_minmax") {
        memory_ = memory::none;
    } else if (kind_ == "static_minmax") {
        memory_ = memory::running;
    } else if (kind_ == "minmax") {
        memory_ = memory::moving;
    } else if (kind_ == "memoryless_mse" || kind_ == "mse") {
        mse_ = true;
        memory_ = kind_ == "mse" ? memory::moving : memory::none;
        mse_opts_ = mse_options_from(kw, mse_options{});
    } else if (kind_ == "nvfp4_expanded_mse") {
        mse_ = true;
        memory_ = memory::none;
        mse_options d;
        d.expand = 1.8;
        d.maxshrink = 1.0 - 0.8 / 1.8;
        d.grid = 200.0;
        d.patience = 1000;
        mse_opts_ = mse_options_from(kw, d);
    } else if (kind_ == "imatrix_mse") {
        mse_ = imatrix_ = true;
        memory_ = memory::none;
        mse_options d;
        d.maxshrink = 0.95;
        d.grid = 20.0;
        d.patience = 5;
        d.norm = 3.0;
        d.imatrix_grid = true;
        mse_opts_ = mse_options_from(kw, d);
        mse_opts_.expand = 1.0; // the imatrix search has no expand
        if (!(mse_opts_.grid > 0)) fail("imatrix_mse: grid must be > 0, got {}", mse_opts_.grid);
        if (mse_opts_.patience < 0) fail("imatrix_mse: patience must be >= 0, got {}", mse_opts_.patience);
        if (!(mse_opts_.maxshrink >= 0 && mse_opts_.maxshrink <= 1))
            fail("imatrix_mse: maxshrink must be in [0, 1], got {}", mse_opts_.maxshrink);
        if (!std::isfinite(mse_opts_.norm) || !(mse_opts_.norm > 0))
            fail("imatrix_mse: norm must be a finite positive number, got {}", mse_opts_.norm);
        strict_ = kw.contains("strict") && kw["strict"].is_boolean() && kw["strict"].get<bool>();
    } else {
        fail("observer '{}' is not supported (supported: memoryless_minmax, static_minmax, "
             "minmax, memoryless_mse, mse, nvfp4_expanded_mse, imatrix_mse)",
             kind_);
    }
}

void observer::observe_input(const at::Tensor &x) {
    if (!imatrix_ || x.dim() < 1 || x.numel() == 0) return;
    const at::Tensor xf = x.detach().to(at::kFloat).reshape({-1, x.size(-1)});
    const at::Tensor sum = xf.pow(2).sum(0);
    if (!imatrix_sum_.defined()) imatrix_sum_ = at::zeros_like(sum);
    if (imatrix_sum_.size(0) != sum.size(0))
        fail("imatrix_mse: inputs have {} channels, earlier ones had {}", sum.size(0), imatrix_sum_.size(0));
    imatrix_sum_ += sum;
    imatrix_count_ += xf.size(0);
}

at::Tensor observer::importance(int64_t in, std::string *why) const {
    auto fallback = [&](const std::string &reason) {
        if (strict_) fail("imatrix_mse: {}", reason);
        if (why != nullptr) *why = reason;
        return at::Tensor();
    };
    if (!imatrix_) return fallback("not an imatrix_mse observer");
    if (role_ != observed_role::weight) return fallback("only supported for weight observers");
    if (args_.strategy == quant_strategy::tensor) return fallback("TENSOR strategy not supported");
    if (args_.strategy != quant_strategy::channel && args_.strategy != quant_strategy::group &&
        args_.strategy != quant_strategy::tensor_group)
        return fallback(fmt::format("unsupported strategy {}", to_string(*args_.strategy)));
    if (imatrix_count_ == 0) return fallback("no calibration inputs reached the module");
    const at::Tensor imp = imatrix_sum_ / static_cast<double>(imatrix_count_);
    if (!at::isfinite(imp).all().item<bool>()) return fallback("contains non-finite values");
    if ((imp < 0).any().item<bool>()) return fallback("contains negative values");
    if ((imp == 0).all().item<bool>()) return fallback("all zeros");
    if (imp.numel() != in) return fallback(fmt::format("size mismatch: expected {}, got {}", in, imp.numel()));
    return imp / (imp.mean() + std::numeric_limits<float>::min());
}

observer::reduction observer::reduce_op() const {
    switch (memory_) {
    case memory::none: return reduction::none;
    case memory::running: return reduction::min_max;
    case memory::moving: return reduction::mean;
    }
    return reduction::none;
}

void observer::fold(at::Tensor &min_acc, at::Tensor &max_acc, const at::Tensor &mn,
                    const at::Tensor &mx) const {
    if (!min_acc.defined() || memory_ == memory::none ||
        (memory_ == memory::moving && averaging_constant_ == 1.0)) {
        min_acc = mn;
        max_acc = mx;
    } else if (memory_ == memory::running) {
        min_acc = at::minimum(min_acc, mn);
        max_acc = at::maximum(max_acc, mx);
    } else {
        // llm-compressor's lerp: old * (1 - c) + new * c.
        const double c = averaging_constant_;
        min_acc = mul_scalar(min_acc, 1.0 - c) + mul_scalar(mn, c);
        max_acc = mul_scalar(max_acc, 1.0 - c) + mul_scalar(mx, c);
    }
}

void observer::observe(const at::Tensor &x, const at::Tensor *g_idx) {
    if (x.numel() == 0) return; // the reference skips empty values
    at::Tensor mn, mx;
    // A block-strategy weight's block minima and maxima straight from x: flatten's layout is a
    // padded, transposed copy of the whole weight.
    if (!mse_ && role_ == observed_role::weight && args_.strategy == quant_strategy::block &&
        minmax_blocks_fast(x, (*args_.block_structure)[0], (*args_.block_structure)[1], mn, mx)) {
        fold(min_, max_, mn, mx);
        return;
    }
    const auto flat = flatten_for_calibration(args_, x, role_, g_idx);
    at::Tensor imp_flat;
    if (imatrix_ && x.dim() == 2) {
        std::string why;
        const at::Tensor imp = importance(x.size(1), &why);
        if (imp.defined())
            imp_flat = flatten_for_calibration(args_, imp.unsqueeze(0).expand({x.size(0), x.size(1)}), role_, g_idx);
        else spdlog::warn("imatrix_mse: {}; falling back to uniform MSE", why);
    }
    bool exact = false; // mn and mx are the groups' own minima and maxima
    if (mse_) std::tie(mn, mx) = mse_min_max(args_, flat, mse_opts_, imp_flat.defined() ? &imp_flat : nullptr);
    else if (!(exact = minmax_last_dim_fast(flat, mn, mx))) {
        mn = at::amin(flat, {0, -1});
        mx = at::amax(flat, {0, -1});
        exact = true;
    }
    fold(min_, max_, mn, mx);
    if (args_.strategy == quant_strategy::tensor_group) {
        // The whole tensor's minimum is its groups' (NaN included, as amin propagates it): a pass
        // over the groups' minima rather than over the values again.
        const auto whole = exact ? mn.reshape({1, 1, -1}) : x.reshape({1, 1, -1});
        const auto whole_max = exact ? mx.reshape({1, 1, -1}) : whole;
        fold(gmin_, gmax_, at::amin(whole, {0, -1}), at::amax(whole_max, {0, -1}));
    }
}

at::Tensor observer::global_scale() const {
    if (args_.strategy != quant_strategy::tensor_group)
        fail("a global scale exists only for strategy tensor_group, not {}",
             to_string(*args_.strategy));
    if (!gmin_.defined()) fail("observer '{}' has observed nothing yet", kind_);
    return global_scale_from_minmax(gmin_, gmax_);
}

qparams observer::get_qparams(const at::Tensor *global_scale) const {
    if (!has_stats()) fail("observer '{}' has observed nothing yet", kind_);
    at::Tensor gs;
    if (args_.strategy == quant_strategy::tensor_group)
        gs = (global_scale && global_scale->defined()) ? *global_scale : this->global_scale();
    return qparams_from_minmax(args_, min_, max_, gs.defined() ? &gs : nullptr);
}

void observer::set_stats(at::Tensor min, at::Tensor max, at::Tensor global_min,
                         at::Tensor global_max) {
    min_ = std::move(min);
    max_ = std::move(max);
    gmin_ = std::move(global_min);
    gmax_ = std::move(global_max);
}

void observer::reset() { min_ = max_ = gmin_ = gmax_ = at::Tensor(); }

qparams qparams_observe(const quant_args &args, const at::Tensor &x, observed_role role,
                        const at::Tensor *global_scale, const at::Tensor *g_idx) {
    require_validated(args);
    // Fully dynamic args have no observer: their qparams are the runtime ones of x.
    if (args.dynamic == dynamic_kind::dynamic) return qparams_dynamic(args, x, global_scale);
    observer obs(args, role);
    obs.observe(x, g_idx);
    if (args.dynamic == dynamic_kind::local) {
        // Only the global scale is calibrated; local scales are computed at runtime.
        const auto gs =
            (global_scale && global_scale->defined()) ? *global_scale : obs.global_scale();
        return qparams_dynamic(args, x, &gs);
    }
    auto qp = obs.get_qparams(global_scale);
    // The observer's result is copied into the module's registered scale parameter.
    qp.scale = qp.scale.to(registered_scale_dtype(x.scalar_type()));
    return qp;
}

qparams qparams_dynamic(const quant_args &a, const at::Tensor &x, const at::Tensor *global_scale) {
    require_validated(a);
    at::Tensor mn, mx;
    switch (*a.strategy) {
    case quant_strategy::token:
        mn = at::amin(x, {-1}, /*keepdim=*/true);
        mx = at::amax(x, {-1}, /*keepdim=*/true);
        break;
    case quant_strategy::tensor:
        mn = x.min();
        mx = x.max();
        break;
    case quant_strategy::group:
    case quant_strategy::tensor_group: {
        const auto g = split_groups(x, *a.group_size);
        mn = at::amin(g, {-1});
        mx = at::amax(g, {-1});
        break;
    }
    default:
        fail("dynamic quantization is only supported for token, tensor, tensor_group and group, "
             "not {}",
             to_string(*a.strategy));
    }
    return qparams_from_minmax(a, mn, mx, global_scale);
}

at::Tensor quantize(const quant_args &a, const at::Tensor &x, const qparams &qp,
                    const at::Tensor *g_idx) {
    auto v = process(a, x, qp, g_idx, true, false, std::nullopt);
    if (a.type == quant_type::int_)
        return v.to(a.num_bits <= 8 ? at::kChar : a.num_bits <= 16 ? at::kShort : at::kInt);
    return a.num_bits == 8 ? fp8_e4m3_encode(v) : fp4_e2m1_encode(v);
}

at::Tensor dequantize(const quant_args &a, const at::Tensor &q, const qparams &qp,
                      const at::Tensor *g_idx, std::optional<at::ScalarType> dtype) {
    at::Tensor v = q;
    if (q.scalar_type() == at::kByte && a.type == quant_type::float_)
        v = a.num_bits == 8 ? fp8_e4m3_decode(q) : fp4_e2m1_decode(q);
    const auto out_dtype = dtype ? *dtype : qp.scale.scalar_type();
    return process(a, v, qp, g_idx, false, true, out_dtype).to(out_dtype);
}

at::Tensor fake_quantize(const quant_args &a, const at::Tensor &x, const qparams &qp,
                         const at::Tensor *g_idx) {
    // GPTQ's per-column calls and whole grouped weights: one scalar loop instead of a chain of
    // ATen ops, same bits (a permuting g_idx takes the generic path).
    if (!valid_g_idx(g_idx))
        if (at::Tensor fast = fake_quantize_fast(a, x, qp); fast.defined()) return fast;
    return process(a, x, qp, g_idx, true, true, std::nullopt);
}

at::Tensor fake_quantize_dynamic(const quant_args &a, const at::Tensor &x,
                                 const at::Tensor *global_scale) {
    if (x.numel() == 0) return x;
    return fake_quantize(a, x, qparams_dynamic(a, x, global_scale));
}

} // namespace llmc::quant
