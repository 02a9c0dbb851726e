// tokenizer.json "model" of type BPE: vocabulary, ranked merges, byte fallback, unknown token.
#pragma once

#include "tokenizer/json_fields.h"

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llmc {

class bpe_model {
  public:
    // Throws llmc::error for a model that is not BPE, dropout > 0, merges naming tokens that are
    // not in the vocabulary, and other malformed fields.
    bpe_model(const nlohmann::json &model, const json_where &w);

    // Appends the ids of one pre-token (a "word").
    void tokenize(std::string_view word, std::vector<int64_t> &out) const;

    std::optional<int64_t> token_to_id(const std::string &token) const;
    const std::string *id_to_token(int64_t id) const; // nullptr for ids outside the vocabulary
    const std::unordered_map<std::string, int32_t> &vocab() const { return vocab_; }

  private:
    struct merge {
        int32_t rank;
        int32_t id; // the merged token
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    int32_t require_id(const std::string &token, const json_where &w) const;
    // The word as initial symbols: characters in the vocabulary, else their <0xXX> byte tokens
    // (byte_fallback), else the unknown token (runs fused with fuse_unk).
    void initial_symbols(std::string_view word, std::vector<int32_t> &ids) const;
    void apply_merges(std::vector<int32_t> &ids) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> tokens_; // by id; ids not in the vocabulary have present_ false
    std::vector<bool> present_;
    std::unordered_map<uint64_t, merge> merges_;
    std::optional<std::string> unk_token_;
    std::array<int32_t, 256> byte_ids_; // id of "<0xXX>", -1 when absent
    std::string prefix_, suffix_;       // continuing_subword_prefix, end_of_word_suffix
    bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;

    // Words repeat: text of a few MB has only tens of thousands of distinct words. Bounded, and
    // long words (a whole paragraph when there is no pre-tokenizer) are not kept.
    static constexpr size_t cache_capacity = 100000;
    static constexpr size_t cache_max_word = 256;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

} // namespace llmc
