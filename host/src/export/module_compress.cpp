#include "export/module_compress.h"

#include "export/formats.h"
#include "export/tensor_codec.h"
#include "io/weight_rows.h"
#include "quant/packing.h"
#include "quant/qparams.h"
#include "quant/quantize_pack.h"
#include "util/error.h"
#include "util/work_pool.h"

#include <atomic>
#include <map>
#include <optional>

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

// mean((a - b)²) in float32 differences, summed in double.
double mean_squared_difference(const at::Tensor &a, const at::Tensor &b) {
    if (a.numel() == 0) return 0.0;
    return (a.to(at::kFloat) - b.to(at::kFloat)).pow(2).sum(at::kDouble).item<double>() / static_cast<double>(a.numel());
}

void add_weight(output &out, const std::string &module_name, const quant_args &w, const std::string &format,
                const tensor_set &in, at::ScalarType model_dtype, const at::Tensor *global_scale, double *error) {
    const at::Tensor *weight = in.get("weight");
    if (!weight) fail("module '{}': a quantized module needs a 'weight' to compress", module_name);
    if (weight->dim() != 2)
        fail("module '{}': weight must be 2-D to compress, got {} dimensions", module_name, weight->dim());
    const bool with_g_idx = uses_g_idx(w);
    const at::Tensor *g_idx = with_g_idx && filled(in.get("weight_g_idx")) ? in.get("weight_g_idx") : nullptr;
    const int64_t rows = weight->size(0), cols = weight->size(1);
    // INT, FP8 and FP4 weights take the fused pass (observing in it too when no qparams are stored
    // and a block of rows observes as the weight does); everything else quantizes first. `fused`:
    // the packed INT words, the int8 values (int- and naive-quantized INT), the FP8 codes or the
    // packed FP4 codes.
    const bool fast_int = format == fmt_name::pack_quantized && fast_paths_enabled();
    const bool fast_int8 = (format == fmt_name::int_quantized || format == fmt_name::naive_quantized) &&
                           w.type == quant::quant_type::int_ && !g_idx && fast_paths_enabled();
    const bool fast_fp8 = (format == fmt_name::float_quantized || format == fmt_name::naive_quantized ||
                           format == fmt_name::mxfp8_quantized) &&
                          w.is_fp8() && !g_idx && fast_paths_enabled();
    const bool fast_fp4 = (format == fmt_name::nvfp4_pack_quantized || format == fmt_name::mxfp4_pack_quantized) &&
                          w.is_fp4() && !g_idx && fast_paths_enabled();
    const bool fast = fast_int || fast_int8 || fast_fp8 || fast_fp4;
    quant::qparams qp;
    at::Tensor fused;
    const quant::row_reader read = fast ? weight_rows_reader(*weight) : quant::row_reader();
    if (fast && !in.get("weight_scale") && !g_idx && !global_scale)
        fused = fast_int    ? quant::observe_quantize_pack_int32(w, *weight, qp, error, read)
                : fast_int8 ? quant::observe_quantize_int8_codes(w, *weight, qp, error, read)
                : fast_fp8  ? quant::observe_quantize_fp8_codes(w, *weight, qp, error, read)
                            : quant::observe_quantize_fp4_packed(w, *weight, qp, error, read);
    if (!fused.defined()) {
        qp = weight_qparams(module_name, w, in, *weight, g_idx, global_scale);
        if (fast_int) fused = quant::quantize_pack_int32(w, *weight, qp, g_idx, error, read);
        if (fast_int8) fused = quant::quantize_int8_codes(w, *weight, qp, error, read);
        if (fast_fp8) fused = quant::quantize_fp8_codes(w, *weight, qp, error, read);
        if (fast_fp4) fused = quant::quantize_fp4_packed(w, *weight, qp, error, read);
    }
    if (fused.defined()) ++fast_paths_taken;
    // After a fused pass only small tensors are left (scales, zero points): ATen's threads would
    // wake for them and spin beside the next weight's pass.
    std::optional<serial_aten_ops> small;
    if (fused.defined()) small.emplace();
    const at::Tensor packed = fast_int ? fused : at::Tensor();
    const at::Tensor q =
        fused.defined() ? (fast_int8 || fast_fp8 ? fused : at::Tensor()) : quant::quantize(w, *weight, qp, g_idx);
    // The generic path measures its error with fake_quantize: the same numbers, one more pass.
    if (error && !fused.defined())
        *error = mean_squared_difference(quant::fake_quantize(w, *weight, qp, g_idx), *weight);

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
        out.add("weight_packed", {fused.defined() ? fused : quant::pack_fp4(q), "U8"});
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
                                          at::ScalarType model_dtype, const at::Tensor *global_scale,
                                          double *weight_error) {
    if (format == fmt_name::dense) return tensors;
    if (!scheme.weights) fail("module '{}': format {} needs weight quantization in its scheme", module_name, format);
    const tensor_set in(tensors);
    output out;
    add_weight(out, module_name, *scheme.weights, format, in, model_dtype, global_scale, weight_error);
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
