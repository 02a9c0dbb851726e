#include "export/module_compress.h"

#include "export/formats.h"
#include "export/tensor_codec.h"
#include "quant/packing.h"
#include "quant/qparams.h"
#include "util/error.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>

namespace llmc::exporter {

using quant::quant_args;
using quant::quant_strategy;

namespace {

std::atomic<bool> fast_paths{true};
std::atomic<uint64_t> fast_paths_taken{0};

class tensor_set {
  public:
    explicit tensor_set(const std::vector<saved_tensor> &in) {
        for (const auto &t : in) by_name_[t.name] = t.tensor;
    }
    const at::Tensor *get(const std::string &name) const {
        auto it = by_name_.find(name);
        return it == by_name_.end() || !it->second.defined() ? nullptr : &it->second;
    }

  private:
    std::map<std::string, at::Tensor> by_name_;
};

struct output {
    std::vector<saved_tensor> tensors;
    void add(const std::string &name, const encoded_tensor &e) { tensors.push_back({name, e.tensor, e.dtype}); }
};

bool uses_g_idx(const quant_args &w) {
    return w.actorder && quant::canonical(*w.actorder) == quant::actorder_kind::group;
}

// A g_idx buffer that was filled in (compressed-tensors initializes it to -1).
bool filled(const at::Tensor *g) { return g && g->numel() > 0 && !(*g < 0).any().item<bool>(); }

// The weight's qparams: stored buffers, or observed now.
quant::qparams weight_qparams(const std::string &module_name, const quant_args &w, const tensor_set &in,
                              const at::Tensor &weight, const at::Tensor *g_idx, const at::Tensor *global_scale) {
    quant::qparams qp;
    if (const at::Tensor *s = in.get("weight_scale")) {
        qp.scale = *s;
        if (const at::Tensor *z = in.get("weight_zero_point")) qp.zero_point = *z;
        if (const at::Tensor *g = in.get("weight_global_scale")) qp.global_scale = *g;
        if (!w.symmetric && !qp.zero_point.defined())
            fail("module '{}': asymmetric weights need 'weight_zero_point' next to 'weight_scale'", module_name);
        if (w.strategy == quant_strategy::tensor_group && !qp.global_scale.defined())
            fail("module '{}': tensor_group weights need 'weight_global_scale' next to 'weight_scale'", module_name);
        return qp;
    }
    return quant::qparams_observe(w, weight, quant::observed_role::weight, global_scale, g_idx);
}

// Static input/output qparams as stored; dynamic ones are computed at inference and not saved
// ("local" keeps only its calibrated global scale).
void add_activation(output &out, const std::string &module_name, const std::string &base, const quant_args &a,
                    const tensor_set &in, at::ScalarType model_dtype) {
    auto need = [&](const std::string &suffix) -> const at::Tensor & {
        const at::Tensor *t = in.get(base + suffix);
        if (!t)
            fail("module '{}': {} quantization is static but '{}{}' is missing (calibrate before saving)",
                 module_name, base, base, suffix);
        return *t;
    };
    if (a.dynamic == quant::dynamic_kind::dynamic) return;
    const bool tensor_group = a.strategy == quant_strategy::tensor_group;
    if (a.dynamic == quant::dynamic_kind::static_) {
        out.add(base + "_scale", encode_scale(need("_scale"), a, scale_storage_of(a), model_dtype));
        if (!a.symmetric) out.add(base + "_zero_point", encode_zero_point(need("_zero_point"), a));
    }
    if (tensor_group) out.add(base + "_global_scale", encode_global_scale(need("_global_scale")));
}

// A float rounded to the computation dtype T, as each ATen op on T rounds its float result
// (round half to even; callers have ruled out NaN, which rounds differently).
template <class T> inline float round_to(float v) { return static_cast<float>(T(v)); }
template <> inline float round_to<float>(float v) { return v; }
template <> inline float round_to<c10::BFloat16>(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u; // c10's round_to_nearest_even, written to vectorize
    std::memcpy(&v, &u, 4);
    return v;
}
template <class X> inline float to_float(X v) { return static_cast<float>(v); }
template <> inline float to_float<c10::BFloat16>(c10::BFloat16 v) {
    const uint32_t u = static_cast<uint32_t>(v.x) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// quantize() then pack_int32() fused into one pass over the weight, for INT weights with
// strategy tensor, channel or group and no g_idx (the pack-quantized formats RTN and GPTQ write).
// Every value takes the steps quant::quantize takes (x / s rounded to the computation dtype T,
// + zero point rounded to T, clamp, round half to even), so the words are bit for bit those of
// the generic path; it saves the int8, int32 and shifted temporaries, their passes and their
// page faults. Returns an undefined tensor when a quotient is NaN (the generic path decides what
// that means).
template <class X, class S, class T>
at::Tensor quantize_pack_rows(const at::Tensor &x, const at::Tensor &scale, const at::Tensor &zp, int64_t group,
                              int bits) {
    const int64_t rows = x.size(0), cols = x.size(1), words = quant::packed_words(cols, bits);
    const int64_t groups = cols / group;
    const bool per_row = scale.numel() != 1;
    at::Tensor zx; // the zero point as quantize_values adds it: converted to x's dtype
    if (zp.defined()) zx = zp.to(x.scalar_type()).to(at::kFloat).contiguous();
    at::Tensor out = at::empty({rows, words}, at::TensorOptions().dtype(at::kInt));
    const X *xp = x.data_ptr<X>();
    const S *sp = scale.data_ptr<S>();
    const float *zpp = zx.defined() ? zx.data_ptr<float>() : nullptr;
    uint32_t *op = reinterpret_cast<uint32_t *>(out.data_ptr<int32_t>());
    const float lo = -std::ldexp(1.0f, bits - 1), hi = std::ldexp(1.0f, bits - 1) - 1.0f;
    const float offset = std::ldexp(1.0f, bits - 1);
    const float magic = 12582912.0f; // 1.5 * 2^23: v + magic - magic rounds |v| < 2^22 half to even
    std::atomic<bool> nan{false};
    // Chunks of at least ~256K values: enough work per thread to hide the scheduling.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(cols, 1));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> f(static_cast<size_t>(cols));
        std::vector<uint32_t> u(static_cast<size_t>(cols));
        int bad = 0;
        for (int64_t r = r0; r < r1; ++r) {
            const X *in = xp + r * cols;
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t k = per_row ? r * groups + g : 0;
                const float s = to_float(sp[k]);
                const float z = zpp ? zpp[k] : 0.0f;
                float *fg = f.data() + g * group;
                const X *ig = in + g * group;
                for (int64_t j = 0; j < group; ++j) fg[j] = to_float(ig[j]) / s;
                for (int64_t j = 0; j < group; ++j) bad |= fg[j] != fg[j];
                for (int64_t j = 0; j < group; ++j) fg[j] = round_to<T>(fg[j]);
                if (zpp)
                    for (int64_t j = 0; j < group; ++j) fg[j] = round_to<T>(fg[j] + z);
            }
            for (int64_t i = 0; i < cols; ++i) {
                const float v = std::min(std::max(f[i], lo), hi);
                u[i] = static_cast<uint32_t>(static_cast<int32_t>((v + magic) - magic + offset));
            }
            uint32_t *row = op + r * words;
            if (bits == 4 && cols % 8 == 0) {
                for (int64_t w = 0; w < words; ++w) {
                    const uint32_t *e = u.data() + w * 8;
                    row[w] = e[0] | e[1] << 4 | e[2] << 8 | e[3] << 12 | e[4] << 16 | e[5] << 20 | e[6] << 24 |
                             e[7] << 28;
                }
                continue;
            }
            std::fill(row, row + words, 0u);
            for (int64_t i = 0; i < cols; ++i) {
                const uint64_t bit = static_cast<uint64_t>(i) * bits;
                const int64_t w = static_cast<int64_t>(bit / 32);
                const unsigned off = bit % 32;
                row[w] |= u[i] << off;
                if (off + bits > 32) row[w + 1] |= u[i] >> (32 - off); // spill into the next word
            }
        }
        if (bad) nan = true;
    });
    return nan ? at::Tensor() : out;
}

// The fused path when it applies, else undefined (the caller takes quantize + pack_int32).
at::Tensor quantize_pack_fast(const quant_args &w, const at::Tensor &weight, const quant::qparams &qp,
                              const at::Tensor *g_idx) {
    if (w.type != quant::quant_type::int_ || w.num_bits < 1 || w.num_bits > 8 || g_idx != nullptr) return {};
    if (qp.global_scale.defined() || !qp.scale.defined() || weight.dim() != 2) return {};
    const int64_t rows = weight.size(0), cols = weight.size(1);
    if (rows == 0 || cols == 0) return {};
    int64_t group = cols;
    const at::Tensor &s = qp.scale;
    switch (*w.strategy) {
    case quant_strategy::tensor:
        if (s.numel() != 1) return {};
        break;
    case quant_strategy::channel:
        if (s.dim() != 2 || s.size(0) != rows || s.size(1) != 1) return {};
        break;
    case quant_strategy::group:
        if (!w.group_size || *w.group_size <= 0 || cols % *w.group_size != 0) return {};
        group = *w.group_size;
        if (s.dim() != 2 || s.size(0) != rows || s.size(1) != cols / group) return {};
        break;
    default: return {};
    }
    if (qp.zero_point.defined() && qp.zero_point.sizes() != s.sizes()) return {};
    const at::ScalarType xt = weight.scalar_type(), st = s.scalar_type();
    auto is_float = [](at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf; };
    if (!is_float(xt) || !is_float(st)) return {};
    const at::ScalarType ct = at::promote_types(xt, st);
    const at::Tensor x = weight.contiguous(), sc = s.contiguous();
    at::Tensor r;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, xt, "quantize_pack_x", [&] {
        using X = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, st, "quantize_pack_s", [&] {
            using S = scalar_t;
            if (ct == at::kFloat) r = quantize_pack_rows<X, S, float>(x, sc, qp.zero_point, group, w.num_bits);
            else if (ct == at::kBFloat16)
                r = quantize_pack_rows<X, S, c10::BFloat16>(x, sc, qp.zero_point, group, w.num_bits);
            else if (ct == at::kHalf) r = quantize_pack_rows<X, S, c10::Half>(x, sc, qp.zero_point, group, w.num_bits);
        });
    });
    return r;
}

void add_weight(output &out, const std::string &module_name, const quant_args &w, const std::string &format,
                const tensor_set &in, at::ScalarType model_dtype, const at::Tensor *global_scale) {
    const at::Tensor *weight = in.get("weight");
    if (!weight) fail("module '{}': a quantized module needs a 'weight' to compress", module_name);
    if (weight->dim() != 2)
        fail("module '{}': weight must be 2-D to compress, got {} dimensions", module_name, weight->dim());
    const bool with_g_idx = uses_g_idx(w);
    const at::Tensor *g_idx = with_g_idx && filled(in.get("weight_g_idx")) ? in.get("weight_g_idx") : nullptr;
    const quant::qparams qp = weight_qparams(module_name, w, in, *weight, g_idx, global_scale);
    const int64_t rows = weight->size(0), cols = weight->size(1);
    // pack-quantized INT weights take the fused pass; everything else quantizes first.
    at::Tensor packed;
    if (format == fmt_name::pack_quantized && fast_paths_enabled()) packed = quantize_pack_fast(w, *weight, qp, g_idx);
    if (packed.defined()) ++fast_paths_taken;
    const at::Tensor q = packed.defined() ? at::Tensor() : quant::quantize(w, *weight, qp, g_idx);

    auto scale = [&] { return encode_scale(qp.scale, w, weight_scale_storage(w, format), model_dtype); };
    auto require = [&](bool ok, const char *what) {
        if (!ok) fail("module '{}': format {} needs {} weights", module_name, format, what);
    };
    if (format == fmt_name::pack_quantized) {
        require(w.type == quant::quant_type::int_ && w.num_bits >= 1 && w.num_bits <= 8, "INT 1..8-bit");
        out.add("weight_packed", plain(packed.defined() ? packed : quant::pack_int32(q, w.num_bits, 1)));
        out.add("weight_scale", scale());
        out.add("weight_shape", plain(at::tensor(std::vector<int64_t>{rows, cols}, at::kLong)));
        if (!w.symmetric) {
            // vLLM unpacks group/channel zero points along the output dim; a tensor's one stays as is.
            const bool packed = w.strategy == quant_strategy::group || w.strategy == quant_strategy::channel;
            if (packed) out.add("weight_zero_point", plain(quant::pack_int32(qp.zero_point, w.num_bits, 0)));
            else out.add("weight_zero_point", encode_zero_point(qp.zero_point, w));
        }
    } else if (format == fmt_name::nvfp4_pack_quantized || format == fmt_name::mxfp4_pack_quantized) {
        require(w.is_fp4(), "FP4");
        out.add("weight_packed", {quant::pack_fp4(q), "U8"});
        out.add("weight_scale", scale());
        if (qp.global_scale.defined()) out.add("weight_global_scale", encode_global_scale(qp.global_scale));
    } else if (format == fmt_name::naive_quantized || format == fmt_name::int_quantized ||
               format == fmt_name::float_quantized || format == fmt_name::mxfp8_quantized) {
        if (format == fmt_name::mxfp8_quantized) require(w.is_fp8(), "FP8");
        if (w.is_fp4()) fail("module '{}': FP4 weights are written by the nvfp4/mxfp4 pack formats, not {}",
                             module_name, format);
        out.add("weight", w.is_fp8() ? encoded_tensor{q, "F8_E4M3"} : plain(q));
        out.add("weight_scale", scale());
        if (!w.symmetric) out.add("weight_zero_point", encode_zero_point(qp.zero_point, w));
        if (qp.global_scale.defined()) out.add("weight_global_scale", encode_global_scale(qp.global_scale));
    } else {
        fail("module '{}': cannot write compression format '{}'", module_name, format);
    }
    if (with_g_idx) {
        // Without a calibrated g_idx the columns were grouped in order: say so explicitly.
        at::Tensor g = g_idx ? *g_idx
                             : at::div(at::arange(cols, at::kLong), static_cast<int64_t>(w.group_size.value_or(cols)),
                                       "floor");
        out.add("weight_g_idx", plain(g.to(at::kInt)));
    }
}

} // namespace

void set_fast_paths(bool on) { fast_paths = on; }
bool fast_paths_enabled() { return fast_paths; }
uint64_t fast_paths_used() { return fast_paths_taken; }

bool is_qparam_name(const std::string &n) {
    for (const char *base : {"weight", "input", "output", "q", "k", "v"})
        for (const char *suffix : {"_scale", "_zero_point", "_global_scale", "_g_idx"})
            if (n == std::string(base) + suffix) return true;
    return false;
}

std::vector<saved_tensor> compress_module(const std::string &module_name, const quant::quant_scheme &scheme,
                                          const std::string &format, const std::vector<saved_tensor> &tensors,
                                          at::ScalarType model_dtype, const at::Tensor *global_scale) {
    if (format == fmt_name::dense) return tensors;
    if (!scheme.weights) fail("module '{}': format {} needs weight quantization in its scheme", module_name, format);
    const tensor_set in(tensors);
    output out;
    add_weight(out, module_name, *scheme.weights, format, in, model_dtype, global_scale);
    if (scheme.input_activations)
        add_activation(out, module_name, "input", *scheme.input_activations, in, model_dtype);
    if (scheme.output_activations)
        add_activation(out, module_name, "output", *scheme.output_activations, in, model_dtype);
    // Everything that is not the weight or a qparam (bias, other buffers) is written as it is;
    // qparams the format does not use (symmetric zero points, dynamic scales) are dropped.
    std::vector<saved_tensor> result;
    for (const auto &t : tensors)
        if (t.name != "weight" && !is_qparam_name(t.name)) result.push_back(t);
    for (auto &t : out.tensors) result.push_back(std::move(t));
    return result;
}

std::vector<saved_tensor> compress_kv_cache(const std::string &module_name, const quant_args &kv,
                                            const std::vector<saved_tensor> &tensors, at::ScalarType model_dtype) {
    std::vector<saved_tensor> result;
    for (const auto &t : tensors) {
        if (!is_qparam_name(t.name)) {
            result.push_back(t);
            continue;
        }
        const bool scale = t.name == "q_scale" || t.name == "k_scale" || t.name == "v_scale";
        const bool zp = t.name == "q_zero_point" || t.name == "k_zero_point" || t.name == "v_zero_point";
        encoded_tensor e;
        if (scale) e = encode_scale(t.tensor, kv, scale_storage_of(kv), model_dtype);
        else if (zp && !kv.symmetric) e = encode_zero_point(t.tensor, kv);
        else continue;
        result.push_back({t.name, e.tensor, e.dtype});
    }
    return result;
}

} // namespace llmc::exporter
