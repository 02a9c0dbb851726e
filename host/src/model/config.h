// Hugging Face config.json for the Llama family (Llama, Mistral, Qwen2, Qwen3): the fields the
// model needs, with transformers' defaults, plus the raw JSON so nothing is lost on save.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llmc {

enum class model_family { llama, mistral, qwen2, qwen3 };

struct rope_scaling_config {
    std::string type; // "linear" or "llama3" ("default"/null means no scaling: no rope_scaling at all)
    double factor = 1.0;
    double low_freq_factor = 1.0;                      // llama3
    double high_freq_factor = 4.0;                     // llama3
    int64_t original_max_position_embeddings = 8192;   // llama3
};

struct model_config {
    std::vector<std::string> architectures; // as in the file
    std::string architecture;               // the one we build: "LlamaForCausalLM", ...
    std::string model_type;                 // "llama", "mistral", "qwen2", "qwen3"
    model_family family = model_family::llama;

    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0; // default as transformers: heads (Llama), 8 (Mistral), 32 (Qwen2/3)
    int64_t head_dim = 0;            // default: hidden_size / num_attention_heads (Qwen3Config: 128)
    int64_t vocab_size = 0;
    int64_t max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    std::optional<rope_scaling_config> rope_scaling;
    std::string hidden_act = "silu";
    double initializer_range = 0.02;
    bool tie_word_embeddings = false;
    bool attention_bias = false; // the file's flag (Llama, Qwen3)
    bool mlp_bias = false;       // the file's flag (Llama)

    // What the family does with those flags (transformers' modeling code):
    bool qkv_bias = false; // Llama/Qwen3: attention_bias; Qwen2: always; Mistral: never
    bool o_bias = false;   // Llama/Qwen3: attention_bias; Qwen2, Mistral: never
    bool qk_norm = false;  // Qwen3: RMSNorm over head_dim on q and k, per head, before rotary
    // Per decoder layer: sliding-window size, 0 for full causal attention.
    std::vector<int64_t> layer_sliding_window;

    std::string torch_dtype; // as read ("float32", "bfloat16", ...), may be empty
    nlohmann::json raw;      // the whole file as read

    // `where` names the source in error messages.
    static model_config from_json(const nlohmann::json &j, const std::string &where = "config.json");
    // A config.json file, or a directory holding one.
    static model_config load(const std::string &path);

    // "Llama", "Mistral", "Qwen2", "Qwen3": the prefix of the Hugging Face class names.
    std::string class_prefix() const;
    int64_t num_key_value_groups() const { return num_attention_heads / num_key_value_heads; }

    // The raw JSON with the fields above written back (those left out of the file stay out
    // while they equal their defaults); torch_dtype as set.
    nlohmann::json to_json() const;
};

const std::vector<std::string> &supported_architectures();

// Rotary inverse frequencies [head_dim / 2] in float32, computed as transformers does
// (default, linear and llama3 rope types).
at::Tensor rope_inv_freq(const model_config &cfg);

// "float32", "bfloat16", "float16" for the config's torch_dtype; throws for other types.
std::string torch_dtype_name(at::ScalarType t);

} // namespace llmc
