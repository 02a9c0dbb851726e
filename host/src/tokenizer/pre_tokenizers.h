// tokenizer.json "pre_tokenizer": cuts normalized text into the words the model tokenizes one
// by one (and, for byte-level models, rewrites them into the byte alphabet).
#pragma once

#include "tokenizer/json_fields.h"

#include <memory>
#include <string>
#include <vector>

namespace llmc {

struct pre_token {
    std::string text;
    // Begins at offset 0 of the input: Metaspace's prepend_scheme "first" prepends only there
    // (not after an added token).
    bool at_start = false;
};

class pre_tokenizer {
  public:
    virtual ~pre_tokenizer() = default;
    // Replaces `pieces` with their pre-tokenized pieces, in order.
    void apply(std::vector<pre_token> &pieces) const;
    virtual void split(pre_token piece, std::vector<pre_token> &out) const = 0;
};

// Types: Sequence, ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, Punctuation,
// Digits. nullptr for a JSON null; other types throw llmc::error naming the file and the type.
std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const nlohmann::json &j, const json_where &w);

// GPT-2's pattern, which ByteLevel with use_regex applies.
extern const char *const gpt2_split_pattern;

} // namespace llmc
