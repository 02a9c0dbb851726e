// tokenizer.json "normalizer": rewrites each stretch of input text between added tokens before
// pre-tokenization (NFC for Qwen, Prepend "▁" + Replace " "→"▁" for Llama 2 / Mistral).
#pragma once

#include "tokenizer/json_fields.h"

#include <memory>
#include <string>

namespace llmc {

class normalizer {
  public:
    virtual ~normalizer() = default;
    virtual std::string normalize(std::string text) const = 0;
};

// Types: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, ByteLevel.
// nullptr for a JSON null; others throw llmc::error naming the file and the type.
std::unique_ptr<normalizer> make_normalizer(const nlohmann::json &j, const json_where &w);

} // namespace llmc
