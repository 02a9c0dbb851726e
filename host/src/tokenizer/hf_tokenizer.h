// The tokenizer.json pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE model ->
// post-processor, and back through the decoder.
#pragma once

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

#include <nlohmann/json.hpp>

namespace llmc {

class hf_tokenizer : public tokenizer {
  public:
    // `file` names tokenizer.json in messages.
    hf_tokenizer(const nlohmann::json &tokenizer_json, const std::string &file, const tokenizer_config &config);

    std::vector<int64_t> encode(const std::string &text, bool add_special_tokens = false) const override;
    std::string decode(const std::vector<int64_t> &ids, bool skip_special_tokens = false) const override;
    std::optional<int64_t> bos_id() const override { return bos_; }
    std::optional<int64_t> eos_id() const override { return eos_; }
    int64_t vocab_size() const override { return vocab_size_; }
    std::optional<std::string> id_to_token(int64_t id) const override;
    std::optional<int64_t> token_to_id(const std::string &token) const override;
    bool is_special(int64_t id) const override;
    bool clean_up_tokenization_spaces() const override { return clean_up_; }

  private:
    // Normalizes, pre-tokenizes and runs the model over one stretch of text between raw added tokens.
    void encode_plain(std::string_view text, bool at_start, std::vector<int64_t> &ids) const;

    std::unique_ptr<normalizer> normalizer_;
    std::unique_ptr<pre_tokenizer> pre_tokenizer_;
    std::unique_ptr<bpe_model> model_;
    std::unique_ptr<added_vocabulary> added_;
    std::unique_ptr<decoder> decoder_;
    special_wrap wrap_; // what add_special_tokens puts around the ids
    std::optional<int64_t> bos_, eos_;
    int64_t vocab_size_ = 0;
    bool clean_up_ = false;
};

} // namespace llmc
