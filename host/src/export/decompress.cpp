#include "export/decompress.h"

#include "export/formats.h"
#include "export/module_compress.h"
#include "export/tensor_codec.h"
#include "quant/forward.h"
#include "quant/packing.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "session/module_match.h"
#include "util/error.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <optional>

namespace llmc::exporter {

using json = nlohmann::json;
using quant::quant_strategy;

namespace {

struct group {
    quant::quant_scheme scheme;
    module_matcher targets;
};

std::vector<std::string> string_list(const json &j, const std::string &where) {
    std::vector<std::string> out;
    if (j.is_null()) return out;
    if (!j.is_array()) fail("{}: expected a list of strings", where);
    for (const auto &v : j) {
        if (!v.is_string()) fail("{}: expected a list of strings, got {}", where, v.dump());
        out.push_back(v.get<std::string>());
    }
    return out;
}

} // namespace

std::shared_ptr<compressed_reader> compressed_reader::open(const json &config,
                                                           std::shared_ptr<const safetensors_model> checkpoint,
                                                           const std::vector<module *> &modules) {
    if (!config.is_object() || !config.contains("quantization_config")) return nullptr;
    const json &qc = config["quantization_config"];
    if (!qc.is_object() || qc.value("quant_method", std::string()) != "compressed-tensors") return nullptr;
    const std::string where = checkpoint->dir() + "/config.json: quantization_config";

    auto r = std::shared_ptr<compressed_reader>(new compressed_reader());
    r->st_ = std::move(checkpoint);
    r->format_ = qc.contains("format") && qc["format"].is_string() ? qc["format"].get<std::string>() : fmt_name::dense;

    std::vector<group> groups;
    if (qc.contains("config_groups") && !qc["config_groups"].is_null()) {
        if (!qc["config_groups"].is_object()) fail("{}.config_groups: expected a mapping", where);
        for (const auto &[name, value] : qc["config_groups"].items()) {
            const std::string gw = where + ".config_groups." + name;
            // A group may be a preset name mapped to its targets ({"W4A16": ["Linear"]}).
            quant::quant_scheme s = value.is_array() ? quant::preset_scheme(name, string_list(value, gw))
                                                     : quant::scheme_from_json(value, gw);
            module_matcher m(s.targets);
            groups.push_back({std::move(s), std::move(m)});
        }
    }
    const module_matcher ignore(string_list(qc.value("ignore", json()), where + ".ignore"));
    if (qc.contains("kv_cache_scheme") && !qc["kv_cache_scheme"].is_null()) {
        r->kv_cache_ = quant::args_from_json(qc["kv_cache_scheme"], where + ".kv_cache_scheme");
        // The forward pass fake-quantizes per-tensor (or dynamic) kv caches only; other
        // strategies still load, measured with an unquantized cache.
        if (r->kv_cache_->strategy != quant_strategy::tensor && !r->kv_cache_->is_dynamic()) {
            spdlog::warn("{}.kv_cache_scheme: strategy {} is not fake-quantized in the forward pass; evaluation "
                         "uses an unquantized kv cache",
                         where, quant::to_string(*r->kv_cache_->strategy));
            r->kv_cache_.reset();
        }
    }
    for (module *mod : modules) {
        // q/k/v scales of attention modules are accepted even without kv_cache_scheme: vLLM reads
        // them whenever the user asks for an fp8 kv cache.
        if (is_attention_class(mod->class_name())) r->quantized_.insert(mod->name());
        if (ignore(mod->name(), mod->class_name())) continue;
        const group *g = nullptr;
        for (const auto &cand : groups)
            if (cand.targets(mod->name(), mod->class_name())) {
                g = &cand;
                break;
            }
        if (g == nullptr) continue;
        r->quantized_.insert(mod->name());
        const quant::quant_scheme &s = g->scheme;
        if ((s.input_activations || s.output_activations) && mod->class_name() == "Linear") {
            quant::quant_scheme a = s;
            a.weights.reset(); // the weight is read back dense: already what it dequantizes to
            r->activations_[mod->name()] = std::move(a);
        }
        std::string format = s.format ? *s.format
                                      : (r->format_ != fmt_name::mixed_precision ? r->format_
                                                                                 : infer_module_format(mod->class_name(), s));
        if (format == fmt_name::dense || !s.weights || !mod->params.count("weight")) continue;
        if (!is_supported_format(format))
            fail("{}: module '{}' uses compression format '{}', which cannot be read", where, mod->name(), format);
        r->plans_[mod->name() + ".weight"] = plan{mod->name(), *s.weights, format};
    }
    return r;
}

const compressed_reader::plan &compressed_reader::plan_of(const std::string &param) const {
    auto it = plans_.find(param);
    if (it == plans_.end()) fail("internal: '{}' is not a compressed weight", param);
    return it->second;
}

bool compressed_reader::is_qparam(const std::string &tensor) const {
    const auto dot = tensor.rfind('.');
    if (dot == std::string::npos) return false;
    return quantized_.count(tensor.substr(0, dot)) && is_qparam_name(tensor.substr(dot + 1));
}

std::vector<std::string> compressed_reader::stored_as(const std::string &param) const {
    const plan &p = plan_of(param);
    std::vector<std::string> out;
    for (const char *n : {"weight", "weight_packed", "weight_shape", "weight_scale", "weight_zero_point",
                          "weight_global_scale", "weight_g_idx"}) {
        const std::string full = p.module + "." + n;
        if (st_->contains(full)) out.push_back(full);
    }
    return out;
}

namespace {

bool packs_int(const std::string &f) { return f == fmt_name::pack_quantized; }
bool packs_fp4(const std::string &f) {
    return f == fmt_name::nvfp4_pack_quantized || f == fmt_name::mxfp4_pack_quantized;
}

} // namespace

std::vector<int64_t> compressed_reader::shape(const std::string &param) const {
    const plan &p = plan_of(param);
    const std::string base = p.module + ".";
    auto need = [&](const std::string &n) -> const safetensors_tensor_info & {
        if (!st_->contains(base + n))
            fail("{}: '{}' is stored as {} but '{}{}' is missing", st_->dir(), param, p.format, base, n);
        return st_->info(base + n);
    };
    if (packs_int(p.format)) {
        const auto &info = need("weight_shape");
        if (info.shape != std::vector<int64_t>{2} || info.dtype != "I64")
            fail("{}: '{}weight_shape' must be I64 [2], got {} {}", st_->dir(), base, info.dtype,
                 fmt::format("{}", fmt::join(info.shape, ",")));
        at::Tensor s = st_->tensor(base + "weight_shape");
        return {s[0].item<int64_t>(), s[1].item<int64_t>()};
    }
    if (packs_fp4(p.format)) {
        auto s = need("weight_packed").shape;
        if (s.size() == 2) s[1] *= 2;
        return s;
    }
    return need("weight").shape;
}

at::Tensor compressed_reader::read(const std::string &param, at::ScalarType dtype) const {
    const plan &p = plan_of(param);
    const quant::quant_args &w = p.weights;
    const std::string base = p.module + ".";
    auto name_of = [&](const std::string &n) {
        if (!st_->contains(base + n))
            fail("{}: '{}' is stored as {} but '{}{}' is missing", st_->dir(), param, p.format, base, n);
        return base + n;
    };
    // Large tensors are copied and their pages dropped, as uncompressed layers are read.
    auto big = [&](const std::string &n) {
        const std::string full = name_of(n);
        return st_->copy_and_drop(full, st_->info(full).scalar_type);
    };
    const std::vector<int64_t> dense_shape = shape(param);

    quant::qparams qp;
    {
        const std::string s = name_of("weight_scale");
        qp.scale = decode_scale(st_->tensor(s), st_->info(s).dtype, weight_scale_storage(w, p.format), dtype);
    }
    if (st_->contains(base + "weight_global_scale"))
        qp.global_scale = st_->tensor(base + "weight_global_scale").to(at::kFloat);
    if (!w.symmetric) {
        const std::string z = name_of("weight_zero_point");
        const bool packed = packs_int(p.format) &&
                            (w.strategy == quant_strategy::group || w.strategy == quant_strategy::channel);
        if (packed)
            qp.zero_point = quant::unpack_int32(st_->tensor(z), w.num_bits, {dense_shape[0], qp.scale.size(-1)}, 0);
        else qp.zero_point = decode_zero_point(st_->tensor(z), st_->info(z).dtype);
    }
    std::optional<at::Tensor> g_idx;
    if (st_->contains(base + "weight_g_idx")) g_idx = st_->tensor(base + "weight_g_idx").to(at::kLong);

    at::Tensor q;
    if (packs_int(p.format)) q = quant::unpack_int32(big("weight_packed"), w.num_bits, dense_shape, 1);
    else if (packs_fp4(p.format)) q = quant::unpack_fp4(big("weight_packed"));
    else q = big("weight");
    return quant::dequantize(w, q, qp, g_idx ? &*g_idx : nullptr, dtype);
}

bool compressed_reader::activation_quantization_apply(module &m, at::ScalarType dtype) const {
    const bool attn = is_attention_class(m.class_name()) && kv_cache_;
    auto act = activations_.find(m.name());
    if (!attn && act == activations_.end()) return false;
    // Stored static qparams become the module's buffers, decoded as the forward pass uses them.
    auto load = [&](const std::string &base, const quant::quant_args &a) {
        const std::string prefix = m.name() + "." + base;
        if (st_->contains(prefix + "_scale")) {
            const std::string n = prefix + "_scale";
            m.buffers[base + "_scale"] = decode_scale(st_->tensor(n), st_->info(n).dtype, scale_storage_of(a), dtype);
        }
        if (st_->contains(prefix + "_zero_point")) {
            const std::string n = prefix + "_zero_point";
            m.buffers[base + "_zero_point"] = decode_zero_point(st_->tensor(n), st_->info(n).dtype);
        }
        if (st_->contains(prefix + "_global_scale"))
            m.buffers[base + "_global_scale"] = st_->tensor(prefix + "_global_scale").to(at::kFloat);
    };
    if (attn) {
        load("k", *kv_cache_);
        load("v", *kv_cache_);
        quant::forward_kv_quantization_set(m, &*kv_cache_);
        return true;
    }
    const quant::quant_scheme &s = act->second;
    if (s.input_activations) load("input", *s.input_activations);
    if (s.output_activations) load("output", *s.output_activations);
    quant::forward_quantization_set(m, &s);
    return true;
}

} // namespace llmc::exporter
