// Hugging Face tokenizer.json: byte-level BPE (Llama 3, Qwen) and SentencePiece-style BPE
// (Llama 2, Mistral), with added and special tokens, and BOS/EOS as tokenizer_config.json says.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace llmc {

class tokenizer {
  public:
    // dir holds tokenizer.json (and optionally tokenizer_config.json, special_tokens_map.json);
    // a path to the tokenizer.json file itself is accepted too.
    // Throws llmc::error naming the file and what is unsupported or malformed.
    static std::unique_ptr<tokenizer> load(const std::string &dir);
    virtual ~tokenizer() = default;

    // Token ids of `text`. Added/special tokens in the text are matched as Hugging Face does.
    // add_special_tokens: the post-processor's BOS/EOS (as tokenizer_config.json's add_bos_token /
    // add_eos_token or the template say).
    virtual std::vector<int64_t> encode(const std::string &text, bool add_special_tokens = false) const = 0;
    virtual std::string decode(const std::vector<int64_t> &ids, bool skip_special_tokens = false) const = 0;

    virtual std::optional<int64_t> bos_id() const = 0;
    virtual std::optional<int64_t> eos_id() const = 0;
    virtual int64_t vocab_size() const = 0; // including added tokens

    // Views for tools and diagnostics, with defaults so that test doubles need not implement them.
    // The token string of an id (added tokens included); nullopt for ids outside the vocabulary.
    virtual std::optional<std::string> id_to_token(int64_t id) const { return std::nullopt; }
    virtual std::optional<int64_t> token_to_id(const std::string &token) const { return std::nullopt; }
    // Whether the id is an added token flagged special (what decode(skip_special_tokens) drops).
    virtual bool is_special(int64_t id) const { return false; }
    // tokenizer_config.json's clean_up_tokenization_spaces, which transformers applies after
    // decoding; see clean_up_tokenization_spaces() in tokenizer/decoders.h.
    virtual bool clean_up_tokenization_spaces() const { return false; }
};

} // namespace llmc
