#include "tokenizer/added_tokens.h"

#include "tokenizer/utf8.h"

namespace llmc {

void added_vocabulary::trie::insert(std::string_view key, int32_t value) {
    if (key.empty()) return;
    first_[static_cast<unsigned char>(key[0])] = true;
    int32_t at = 0;
    for (char ch : key) {
        const auto c = static_cast<unsigned char>(ch);
        int32_t child = -1;
        for (const auto &[k, v] : nodes_[at].kids)
            if (k == c) child = v;
        if (child < 0) {
            child = static_cast<int32_t>(nodes_.size());
            nodes_[at].kids.emplace_back(c, child);
            nodes_.emplace_back();
        }
        at = child;
    }
    nodes_[at].value = value; // a repeated content: the later entry wins, as in HF's map
}

std::pair<int32_t, size_t> added_vocabulary::trie::longest_at(std::string_view text, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, 0};
    int32_t at = 0;
    for (size_t i = pos; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        int32_t child = -1;
        for (const auto &[k, v] : nodes_[at].kids)
            if (k == c) child = v;
        if (child < 0) break;
        at = child;
        if (nodes_[at].value >= 0) best = {nodes_[at].value, i + 1 - pos};
    }
    return best;
}

added_vocabulary::added_vocabulary(const nlohmann::json &list, const json_where &w, const normalizer *norm) {
    if (list.is_null()) return;
    if (!list.is_array()) json_fail(w, "expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
        const json_where tw = w[i];
        const nlohmann::json &t = list[i];
        added_token a;
        const nlohmann::json &id = json_require(t, "id", tw);
        if (!id.is_number_integer() || id.get<int64_t>() < 0) json_fail(tw / "id", "expected a non-negative integer");
        a.id = id.get<int64_t>();
        a.content = json_require_string(t, "content", tw);
        if (a.content.empty()) json_fail(tw / "content", "must not be empty");
        if (utf8_invalid_offset(a.content) != std::string_view::npos) json_fail(tw / "content", "is not valid UTF-8");
        a.single_word = json_bool(t, "single_word", tw, false);
        a.lstrip = json_bool(t, "lstrip", tw, false);
        a.rstrip = json_bool(t, "rstrip", tw, false);
        a.special = json_bool(t, "special", tw, false);
        a.normalized = json_bool(t, "normalized", tw, !a.special); // the default of HF's AddedToken
        by_id_[a.id] = tokens_.size();
        by_content_[a.content] = tokens_.size();
        tokens_.push_back(std::move(a));
    }
    for (size_t i = 0; i < tokens_.size(); ++i) {
        const added_token &a = tokens_[i];
        if (a.normalized)
            norm_.insert(norm ? norm->normalize(a.content) : a.content, static_cast<int32_t>(i));
        else
            raw_.insert(a.content, static_cast<int32_t>(i));
    }
}

const added_token *added_vocabulary::find(int64_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const added_token *added_vocabulary::find(const std::string &content) const {
    auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

bool added_vocabulary::is_single_word_at(std::string_view text, size_t begin, size_t end) const {
    if (begin > 0) {
        size_t b = begin;
        utf8_prev(text, b);
        if (word_char_.matches_at(text, b)) return false;
    }
    return end >= text.size() || !word_char_.matches_at(text, end);
}

std::vector<text_span> added_vocabulary::split(std::string_view text, bool normalized) const {
    const trie &t = normalized ? norm_ : raw_;
    std::vector<text_span> out;
    if (t.empty()) {
        if (!text.empty()) out.push_back({0, text.size(), -1});
        return out;
    }
    size_t done = 0; // text before this is already in `out`
    size_t pos = 0;
    while (pos < text.size()) {
        if (!t.may_start(static_cast<unsigned char>(text[pos]))) {
            ++pos;
            continue;
        }
        const auto [index, len] = t.longest_at(text, pos);
        if (index < 0) {
            ++pos;
            continue;
        }
        const added_token &a = tokens_[index];
        size_t b = pos, e = pos + len;
        pos = e; // HF resumes after the match even when it is discarded below
        if (a.single_word && !is_single_word_at(text, b, e)) continue;
        if (a.lstrip) {
            while (b > done) {
                size_t k = b;
                if (!is_unicode_whitespace(utf8_prev(text, k))) break;
                b = k;
            }
        }
        if (a.rstrip) {
            while (e < text.size()) {
                size_t k = e;
                if (!is_unicode_whitespace(utf8_next(text, k))) break;
                e = k;
            }
            pos = e;
        }
        if (b > done) out.push_back({done, b, -1});
        out.push_back({b, e, index});
        done = e;
    }
    if (done < text.size()) out.push_back({done, text.size(), -1});
    return out;
}

} // namespace llmc
