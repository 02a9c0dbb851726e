// tokenizer.json "added_tokens": strings matched in the input before the model sees it (special
// tokens such as <|im_start|>, and user-added words), with HF's matching rules.
#pragma once

#include "tokenizer/normalizers.h"
#include "tokenizer/regex.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llmc {

struct added_token {
    int64_t id = -1;
    std::string content;
    bool single_word = false; // only where not touching a word character on either side
    bool lstrip = false;      // swallows the whitespace before it
    bool rstrip = false;      // swallows the whitespace after it
    bool normalized = false;  // matched in normalized text (else in the raw input)
    bool special = false;     // dropped by decode(skip_special_tokens)
};

// A stretch of text: an added token (token >= 0, an index into tokens()) or plain text.
struct text_span {
    size_t begin = 0, end = 0;
    int32_t token = -1;
};

class added_vocabulary {
  public:
    // Reads the "added_tokens" array; `norm` (may be null) normalizes the contents of tokens
    // flagged normalized, as HF matches them against normalized text.
    added_vocabulary(const nlohmann::json &list, const json_where &w, const normalizer *norm);

    // Cuts `text` at the added tokens of one kind: raw (normalized=false, on the input) or
    // normalized (on each normalized stretch). Leftmost-longest, non-overlapping, as HF.
    std::vector<text_span> split(std::string_view text, bool normalized) const;
    bool has_normalized() const { return !norm_.empty(); }

    const std::vector<added_token> &tokens() const { return tokens_; }
    const added_token *find(int64_t id) const;
    const added_token *find(const std::string &content) const;

  private:
    // A byte trie over token contents, for the longest token starting at a position.
    class trie {
      public:
        void insert(std::string_view key, int32_t value);
        // (value, length) of the longest key at text[pos]; value -1 when none.
        std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
        bool may_start(unsigned char c) const { return first_[c]; }
        bool empty() const { return nodes_.size() == 1; }

      private:
        struct node {
            std::vector<std::pair<unsigned char, int32_t>> kids;
            int32_t value = -1;
        };
        std::vector<node> nodes_{1};
        std::array<bool, 256> first_{};
    };

    bool is_single_word_at(std::string_view text, size_t begin, size_t end) const;

    std::vector<added_token> tokens_;
    std::unordered_map<int64_t, size_t> by_id_;
    std::unordered_map<std::string, size_t> by_content_;
    trie raw_, norm_;
    // Rust's regex-crate \w, which HF's single_word check uses.
    regex word_char_{R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", "added tokens"};
};

} // namespace llmc
