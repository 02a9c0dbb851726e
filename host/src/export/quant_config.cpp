#include "export/quant_config.h"

#include "export/formats.h"

#include <algorithm>
#include <set>

namespace llmc::exporter {

using json = nlohmann::json;

namespace {

// is_module_quantized: a scheme that quantizes something.
bool quantizes(const quant::quant_scheme &s) {
    return s.weights || s.input_activations || s.output_activations;
}

} // namespace

quantization_plan plan_quantization(const std::vector<module_entry> &modules,
                                    const std::optional<quant::quant_args> &kv_cache_scheme,
                                    const std::string &status) {
    quantization_plan plan;
    std::vector<json> groups;
    std::set<std::string> quantized_types, formats;
    // Not-quantized module names per vLLM type, types in order of first appearance (a Python dict).
    std::vector<std::pair<std::string, std::vector<std::string>>> unquantized;
    bool any_kv = false;

    for (const auto &m : modules) {
        const bool quantized = m.scheme && quantizes(*m.scheme);
        const bool attention = is_attention_class(m.class_name);
        const std::string type = vllm_module_type(m.class_name);
        if (quantized && attention) {
            plan.kv_modules.push_back(m.name);
            plan.kv_cache_scheme = m.scheme->input_activations; // the last one wins, as the reference
            any_kv = true;
        }
        if (quantized && !attention) {
            quant::quant_scheme s = *m.scheme;
            s.format = infer_module_format(m.class_name, s);
            plan.formats[m.name] = *s.format;
            formats.insert(*s.format);
            quantized_types.insert(type);
            const json j = quant::scheme_to_json(s);
            if (std::find(groups.begin(), groups.end(), j) == groups.end()) groups.push_back(j);
            continue;
        }
        auto it = std::find_if(unquantized.begin(), unquantized.end(), [&](const auto &p) { return p.first == type; });
        if (it == unquantized.end()) unquantized.push_back({type, {m.name}});
        else it->second.push_back(m.name);
    }
    if (kv_cache_scheme) {
        plan.kv_cache_scheme = kv_cache_scheme;
        any_kv = true;
    }
    plan.model_format = model_format(formats);
    if (groups.empty() && !any_kv) return plan; // nothing quantized: no quantization_config

    json ignore = json::array();
    for (const auto &[type, names] : unquantized)
        if (quantized_types.count(type))
            for (const auto &n : names) ignore.push_back(n);
    json config_groups = json::object();
    for (size_t i = 0; i < groups.size(); ++i) config_groups["group_" + std::to_string(i)] = groups[i];

    json c = json::object();
    c["config_groups"] = config_groups;
    c["format"] = plan.model_format;
    c["global_compression_ratio"] = nullptr;
    c["ignore"] = ignore;
    c["kv_cache_scheme"] = plan.kv_cache_scheme ? quant::args_to_json(*plan.kv_cache_scheme) : json(nullptr);
    c["quant_method"] = "compressed-tensors";
    c["quantization_status"] = status;
    c["sparsity_config"] = json::object();
    c["transform_config"] = json::object();
    c["version"] = compressed_tensors_version;
    plan.config = c;
    return plan;
}

} // namespace llmc::exporter
