// tokenizer_config.json and special_tokens_map.json: the transformers-side settings that
// tokenizer.json does not hold (which strings are BOS/EOS, Llama 2's add_bos_token).
#pragma once

#include <optional>
#include <string>

namespace llmc {

struct tokenizer_config {
    // LlamaTokenizer-style switches: when present they decide the BOS/EOS that
    // add_special_tokens adds, in place of tokenizer.json's post_processor.
    std::optional<bool> add_bos_token, add_eos_token;
    std::optional<std::string> bos_token, eos_token; // token strings
    // Whether a file names them at all ("bos_token": null decides too: Qwen has no BOS).
    bool bos_named = false, eos_named = false;
    bool clean_up_tokenization_spaces = false;
};

// Reads dir/tokenizer_config.json, completing bos/eos from dir/special_tokens_map.json; both are
// optional. Throws llmc::error naming the file when one exists but is malformed.
tokenizer_config read_tokenizer_config(const std::string &dir);

} // namespace llmc
