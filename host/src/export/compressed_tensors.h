// Saving a model with attached quantization schemes as a compressed-tensors checkpoint that vLLM
// loads: every quantized module in its format's tensors (reference 6.2) and config.json with
// quantization_config (6.3), streamed layer by layer through causal_lm::save.
#pragma once

#include "io/safetensors.h"
#include "model/causal_lm.h"
#include "quant/args.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llmc::exporter {

struct export_options {
    uint64_t max_shard_bytes = safetensors_sharded_writer::default_max_shard_bytes;
    // Overrides the kv-cache scheme taken from schemes attached to attention modules.
    std::optional<quant::quant_args> kv_cache_scheme;
};

// Bytes of one module's tensors before and after compression (for the run report).
struct module_export {
    std::string module;
    std::string format;
    uint64_t bytes_before = 0;
    uint64_t bytes_after = 0;
    double weight_error = std::nan(""); // compress_module's weight_error; NaN without a quantized weight
};

struct export_report {
    std::string format; // the model-level format ("dense" when nothing was quantized)
    nlohmann::json quantization_config;
    std::vector<module_export> modules; // quantized modules, in save order
    uint64_t bytes_before = 0;          // every tensor of the model, dense
    uint64_t bytes_after = 0;           // every tensor written
};

// schemes: module name -> canonical scheme JSON (session::schemes()). Writes the safetensors and
// config.json into dir (recipe, tokenizer and the rest are the caller's). Without any quantized
// module this is a plain save.
export_report export_compressed(causal_lm &m, const std::map<std::string, std::string> &schemes,
                                const std::string &dir, const export_options &opt = {});

} // namespace llmc::exporter
