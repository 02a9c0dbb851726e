#include "export/compressed_tensors.h"

#include "export/formats.h"
#include "export/module_compress.h"
#include "export/quant_config.h"
#include "quant/qparams.h"
#include "util/error.h"

#include <spdlog/spdlog.h>

#include <set>

namespace llmc::exporter {

namespace {

// Modules vLLM fuses into one kernel: NVFP4 partners must share one global scale.
const std::vector<std::set<std::string>> fused_sets = {
    {"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"}, {"q_a_proj", "kv_a_proj_with_mqa"}, {"w1", "w3"}};

std::string local_name(const module &m) {
    const auto dot = m.name().rfind('.');
    return dot == std::string::npos ? m.name() : m.name().substr(dot + 1);
}

uint64_t bytes_of(const std::vector<saved_tensor> &ts) {
    uint64_t n = 0;
    for (const auto &t : ts) n += static_cast<uint64_t>(t.tensor.nbytes());
    return n;
}

// For a tensor_group module without stored qparams: the global scale over all its fused partners
// when every partner is tensor_group too (generate_gparam over the fused absmax); else undefined
// (the module's own is computed).
at::Tensor fused_global_scale(module &mod, const std::map<std::string, quant::quant_scheme> &parsed) {
    module *parent = mod.parent();
    if (parent == nullptr) return {};
    const std::string me = local_name(mod);
    for (const auto &set : fused_sets) {
        if (!set.count(me)) continue;
        std::vector<at::Tensor> mins, maxs;
        for (const auto &partner : set) {
            module *p = parent->child(partner);
            if (p == nullptr) return {};
            auto it = parsed.find(p->name());
            if (it == parsed.end() || !it->second.weights ||
                it->second.weights->strategy != quant::quant_strategy::tensor_group)
                return {};
            const at::Tensor &w = p->params.at("weight");
            mins.push_back(w.min().reshape({1}));
            maxs.push_back(w.max().reshape({1}));
        }
        return quant::global_scale_from_minmax(at::cat(mins), at::cat(maxs));
    }
    return {};
}

} // namespace

export_report export_compressed(causal_lm &m, const std::map<std::string, std::string> &schemes,
                                const std::string &dir, const export_options &opt) {
    std::map<std::string, quant::quant_scheme> parsed;
    for (const auto &[name, text] : schemes) {
        if (m.find(name) == nullptr) fail("cannot export: a scheme is attached to '{}', which is not a module", name);
        parsed[name] = quant::scheme_from_json(nlohmann::json::parse(text), name);
    }
    std::vector<module_entry> entries;
    for (module *mod : m.modules()) {
        module_entry e{mod->name(), mod->class_name(), std::nullopt};
        auto it = parsed.find(mod->name());
        if (it != parsed.end()) e.scheme = it->second;
        entries.push_back(std::move(e));
    }
    const quantization_plan plan = plan_quantization(entries, opt.kv_cache_scheme);
    for (const auto &[name, format] : plan.formats)
        if (!is_supported_format(format))
            fail("cannot export module '{}': compression format '{}' is not supported (legacy sparse formats)", name,
                 format);

    export_report report;
    report.format = plan.model_format;
    report.quantization_config = plan.config;
    const at::ScalarType dtype = m.dtype();

    save_hooks hooks;
    bool warned = false;
    hooks.transform = [&](module &mod, std::vector<saved_tensor> &tensors) {
        const uint64_t before = bytes_of(tensors);
        // Calibrated kv scales without a kv-cache scheme are saved but not described.
        if (!plan.kv_cache_scheme && !warned && is_attention_class(mod.class_name()) &&
            (mod.buffers.count("k_scale") || mod.buffers.count("v_scale"))) {
            spdlog::warn("'{}' has k_scale/v_scale but no kv-cache scheme is attached to an attention module: they "
                         "are saved as they are and quantization_config.kv_cache_scheme stays null",
                         mod.name());
            warned = true;
        }
        report.bytes_before += before;
        const std::string prefix = mod.name().empty() ? "" : mod.name() + ".";
        auto fmt_it = plan.formats.find(mod.name());
        const bool kv = plan.kv_cache_scheme && is_attention_class(mod.class_name());
        if (fmt_it != plan.formats.end() || kv) {
            std::vector<saved_tensor> local;
            for (const auto &t : tensors) local.push_back({t.name.substr(prefix.size()), t.tensor, t.dtype});
            std::vector<saved_tensor> out;
            std::string format;
            double weight_error = std::nan("");
            if (fmt_it != plan.formats.end()) {
                format = fmt_it->second;
                const quant::quant_scheme &scheme = parsed.at(mod.name());
                at::Tensor gs;
                if (scheme.weights && scheme.weights->strategy == quant::quant_strategy::tensor_group &&
                    !mod.buffers.count("weight_scale"))
                    gs = fused_global_scale(mod, parsed);
                out = compress_module(mod.name(), scheme, format, local, dtype, gs.defined() ? &gs : nullptr,
                                      scheme.weights ? &weight_error : nullptr);
            } else {
                format = "kv-cache";
                out = compress_kv_cache(mod.name(), *plan.kv_cache_scheme, local, dtype);
            }
            for (auto &t : out) t.name = prefix + t.name;
            tensors = std::move(out);
            if (before != 0 || !tensors.empty())
                report.modules.push_back({mod.name(), format, before, bytes_of(tensors), weight_error});
        }
        report.bytes_after += bytes_of(tensors);
    };
    if (!plan.config.is_null()) hooks.config_extra["quantization_config"] = plan.config;
    m.save(dir, opt.max_shard_bytes, hooks);
    spdlog::info("saved {} ({} quantized modules): {:.1f} MB -> {:.1f} MB", report.format, report.modules.size(),
                 report.bytes_before / 1e6, report.bytes_after / 1e6);
    return report;
}

} // namespace llmc::exporter
