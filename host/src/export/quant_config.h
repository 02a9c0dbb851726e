// config.json's quantization_config as compressed-tensors 0.18 writes it for a compressed save
// (QuantizationConfig.from_pretrained + ModelCompressor.update_config, reference section 6.3).
#pragma once

#include "quant/args.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llmc::exporter {

inline const std::string compressed_tensors_version = "0.18.0";

// One module of the model, in named_modules order, with the scheme attached to it (if any).
struct module_entry {
    std::string name;
    std::string class_name;
    std::optional<quant::quant_scheme> scheme;
};

struct quantization_plan {
    // Modules that form config groups, by name: their compression format.
    std::map<std::string, std::string> formats;
    // Attention modules whose scheme is a kv-cache scheme.
    std::vector<std::string> kv_modules;
    std::optional<quant::quant_args> kv_cache_scheme;
    std::string model_format;
    // The quantization_config object (keys sorted at every level: nlohmann::json is a std::map);
    // null when nothing is quantized.
    nlohmann::json config;
};

// Config groups are the unique schemes (each with its format filled in) in module order; a scheme
// on an attention module contributes its input_activations as kv_cache_scheme (overridden by
// `kv_cache_scheme` when given); `ignore` lists, by name, every module whose (vLLM) class has a
// quantized instance but that is not quantized itself.
quantization_plan plan_quantization(const std::vector<module_entry> &modules,
                                    const std::optional<quant::quant_args> &kv_cache_scheme = std::nullopt,
                                    const std::string &status = "compressed");

} // namespace llmc::exporter
