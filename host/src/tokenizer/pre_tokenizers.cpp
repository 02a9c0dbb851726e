#include "tokenizer/pre_tokenizers.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/split.h"

namespace llmc {

const char *const gpt2_split_pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void pre_tokenizer::apply(std::vector<pre_token> &pieces) const {
    std::vector<pre_token> out;
    out.reserve(pieces.size());
    for (auto &p : pieces) split(std::move(p), out);
    pieces = std::move(out);
}

namespace {

// Cuts `piece` at the matches of `re`; only the first piece keeps at_start.
void split_by_regex(const regex &re, pre_token piece, split_behavior behavior, bool invert,
                    std::vector<pre_token> &out) {
    std::vector<byte_range> matches;
    re.find_all(piece.text, matches);
    for (const auto &[b, e] : split_ranges(piece.text.size(), matches, behavior, invert))
        out.push_back({piece.text.substr(b, e - b), piece.at_start && b == 0});
}

class sequence_pre_tokenizer : public pre_tokenizer {
  public:
    explicit sequence_pre_tokenizer(std::vector<std::unique_ptr<pre_tokenizer>> parts) : parts_(std::move(parts)) {}
    void split(pre_token piece, std::vector<pre_token> &out) const override {
        std::vector<pre_token> pieces{std::move(piece)};
        for (const auto &p : parts_) p->apply(pieces);
        for (auto &p : pieces) out.push_back(std::move(p));
    }

  private:
    std::vector<std::unique_ptr<pre_tokenizer>> parts_;
};

class byte_level_pre_tokenizer : public pre_tokenizer {
  public:
    byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex, const json_where &w)
        : add_prefix_space_(add_prefix_space) {
        if (use_regex) re_ = std::make_unique<regex>(gpt2_split_pattern, w.label());
    }
    void split(pre_token piece, std::vector<pre_token> &out) const override {
        // HF adds the space to every stretch between added tokens, not only the first.
        if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) piece.text.insert(0, " ");
        std::vector<pre_token> pieces;
        if (re_)
            split_by_regex(*re_, std::move(piece), split_behavior::isolated, false, pieces);
        else
            pieces.push_back(std::move(piece));
        for (auto &p : pieces) out.push_back({byte_level_encode(p.text), p.at_start});
    }

  private:
    bool add_prefix_space_;
    std::unique_ptr<regex> re_;
};

class regex_split_pre_tokenizer : public pre_tokenizer {
  public:
    regex_split_pre_tokenizer(const std::string &pattern, split_behavior behavior, bool invert, const json_where &w)
        : re_(pattern, w.label()), behavior_(behavior), invert_(invert) {}
    void split(pre_token piece, std::vector<pre_token> &out) const override {
        split_by_regex(re_, std::move(piece), behavior_, invert_, out);
    }

  private:
    regex re_;
    split_behavior behavior_;
    bool invert_;
};

enum class prepend_scheme { always, first, never };

class metaspace_pre_tokenizer : public pre_tokenizer {
  public:
    metaspace_pre_tokenizer(std::string replacement, prepend_scheme scheme, bool split, const json_where &w)
        : rep_(std::move(replacement)), scheme_(scheme) {
        if (split) re_ = std::make_unique<regex>(regex_escape(rep_), w.label());
    }
    void split(pre_token piece, std::vector<pre_token> &out) const override {
        std::string s;
        s.reserve(piece.text.size() + rep_.size());
        for (char c : piece.text) {
            if (c == ' ')
                s += rep_;
            else
                s += c;
        }
        const bool starts = s.compare(0, rep_.size(), rep_) == 0;
        if (!starts && (scheme_ == prepend_scheme::always || (scheme_ == prepend_scheme::first && piece.at_start)))
            s.insert(0, rep_);
        piece.text = std::move(s);
        // Each "▁" starts a new word: MergedWithNext keeps it at the front of the word after it.
        if (re_)
            split_by_regex(*re_, std::move(piece), split_behavior::merged_with_next, false, out);
        else
            out.push_back(std::move(piece));
    }

  private:
    std::string rep_;
    prepend_scheme scheme_;
    std::unique_ptr<regex> re_;
};

prepend_scheme read_prepend_scheme(const nlohmann::json &j, const json_where &w) {
    // Older files say add_prefix_space (true: always); newer ones prepend_scheme.
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
        const std::string s = json_string(j, "prepend_scheme", w, "always");
        if (s == "always") return prepend_scheme::always;
        if (s == "first") return prepend_scheme::first;
        if (s == "never") return prepend_scheme::never;
        json_fail(w / "prepend_scheme", "expected \"always\", \"first\" or \"never\", got '" + s + "'");
    }
    return json_bool(j, "add_prefix_space", w, true) ? prepend_scheme::always : prepend_scheme::never;
}

std::string read_replacement(const nlohmann::json &j, const json_where &w) {
    std::string rep = json_string(j, "replacement", w, json_string(j, "str_rep", w, "\u2581"));
    if (rep.empty()) json_fail(w / "replacement", "must not be empty");
    return rep;
}

} // namespace

std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const nlohmann::json &j, const json_where &w) {
    if (j.is_null()) return nullptr;
    const std::string type = json_type(j, w);
    if (type == "Sequence") {
        const nlohmann::json &list = json_require_array(j, "pretokenizers", w);
        std::vector<std::unique_ptr<pre_tokenizer>> parts;
        for (size_t i = 0; i < list.size(); ++i)
            if (auto p = make_pre_tokenizer(list[i], (w / "pretokenizers")[i])) parts.push_back(std::move(p));
        return std::make_unique<sequence_pre_tokenizer>(std::move(parts));
    }
    if (type == "ByteLevel")
        return std::make_unique<byte_level_pre_tokenizer>(json_bool(j, "add_prefix_space", w, true),
                                                          json_bool(j, "use_regex", w, true), w);
    if (type == "Split") {
        const json_pattern p = json_read_pattern(j, w);
        const split_behavior b = parse_split_behavior(json_require_string(j, "behavior", w), w / "behavior");
        return std::make_unique<regex_split_pre_tokenizer>(p.is_regex ? p.text : regex_escape(p.text), b,
                                                           json_bool(j, "invert", w, false), w);
    }
    if (type == "Metaspace")
        return std::make_unique<metaspace_pre_tokenizer>(read_replacement(j, w), read_prepend_scheme(j, w),
                                                         json_bool(j, "split", w, true), w);
    if (type == "Whitespace") // words and runs of other non-space characters; spaces dropped
        return std::make_unique<regex_split_pre_tokenizer>(R"(\w+|[^\w\s]+)", split_behavior::removed, true, w);
    if (type == "WhitespaceSplit")
        return std::make_unique<regex_split_pre_tokenizer>(R"(\s+)", split_behavior::removed, false, w);
    if (type == "Punctuation") {
        const split_behavior b = parse_split_behavior(json_string(j, "behavior", w, "Isolated"), w / "behavior");
        return std::make_unique<regex_split_pre_tokenizer>(R"([\p{P}\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E])", b, false,
                                                           w);
    }
    if (type == "Digits") {
        const bool individual = json_bool(j, "individual_digits", w, false);
        return std::make_unique<regex_split_pre_tokenizer>(
            R"(\p{N})", individual ? split_behavior::isolated : split_behavior::contiguous, false, w);
    }
    json_unsupported(w, "pre_tokenizer", type);
}

} // namespace llmc
