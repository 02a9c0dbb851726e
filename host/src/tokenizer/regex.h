// PCRE2 (UTF + UCP) for the patterns tokenizer.json carries. HF compiles them with Oniguruma;
// PCRE2 shares the syntax they use (\p{L}/\p{N}, (?i:...), possessive ?+ and *+, lookahead), and
// onig_syntax.h rewrites the shorthands whose sets differ.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmc {

class regex {
  public:
    using range = std::pair<size_t, size_t>; // byte offsets [begin, end)

    // Throws llmc::error "<where>: bad regex '<pattern>': <PCRE2 message> at offset N".
    regex(const std::string &pattern, const std::string &where);
    ~regex();
    regex(const regex &) = delete;
    regex &operator=(const regex &) = delete;

    // The successive non-overlapping matches in `text`, appended to `out`. `text` must be valid
    // UTF-8 (the tokenizer checks its input once; PCRE2's own check would cost O(n) per call).
    void find_all(std::string_view text, std::vector<range> &out) const;
    // Whether the pattern matches starting exactly at byte `pos`.
    bool matches_at(std::string_view text, size_t pos) const;

    const std::string &pattern() const { return pattern_; }

  private:
    struct impl;
    std::string pattern_;
    std::unique_ptr<impl> impl_;
};

// `literal` with every regex metacharacter escaped (Split/Replace with a String pattern).
std::string regex_escape(std::string_view literal);

} // namespace llmc
