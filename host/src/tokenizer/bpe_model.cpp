#include "tokenizer/bpe_model.h"

#include "tokenizer/utf8.h"
#include "util/error.h"

#include <fmt/format.h>

#include <limits>
#include <queue>

namespace llmc {

bpe_model::bpe_model(const nlohmann::json &model, const json_where &w) {
    if (!model.is_object()) json_fail(w, "expected an object");
    // Old files leave "type" out; HF then recognises BPE by its merges.
    const std::string type = model.contains("type") ? json_type(model, w) : (model.contains("merges") ? "BPE" : "");
    if (type.empty()) json_fail(w / "type", "missing");
    if (type != "BPE") json_unsupported(w, "model", type);
    if (model.contains("dropout") && !model["dropout"].is_null()) {
        if (!model["dropout"].is_number()) json_fail(w / "dropout", "expected a number or null");
        // Dropout samples merges at random (a training aid); inference runs without it.
        if (model["dropout"].get<double>() > 0.0) json_fail(w / "dropout", "BPE dropout is not supported");
    }

    const nlohmann::json &vocab = json_require(model, "vocab", w);
    if (!vocab.is_object()) json_fail(w / "vocab", "expected an object of token -> id");
    int64_t max_id = -1;
    vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer()) json_fail(w / "vocab" / it.key(), "expected an integer id");
        const int64_t id = it.value().get<int64_t>();
        if (id < 0 || id >= std::numeric_limits<int32_t>::max())
            json_fail(w / "vocab" / it.key(), "id " + std::to_string(id) + " out of range");
        vocab_[it.key()] = static_cast<int32_t>(id);
        max_id = std::max(max_id, id);
    }
    tokens_.resize(static_cast<size_t>(max_id + 1));
    present_.assign(static_cast<size_t>(max_id + 1), false);
    for (const auto &[tok, id] : vocab_) {
        tokens_[id] = tok;
        present_[id] = true;
    }

    prefix_ = json_string(model, "continuing_subword_prefix", w, "");
    suffix_ = json_string(model, "end_of_word_suffix", w, "");
    byte_fallback_ = json_bool(model, "byte_fallback", w, false);
    fuse_unk_ = json_bool(model, "fuse_unk", w, false);
    ignore_merges_ = json_bool(model, "ignore_merges", w, false);
    if (model.contains("unk_token") && !model["unk_token"].is_null())
        unk_token_ = json_require_string(model, "unk_token", w);
    for (int b = 0; b < 256; ++b) {
        auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }

    const nlohmann::json &merges = json_require_array(model, "merges", w);
    merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const json_where mw = (w / "merges")[i];
        const nlohmann::json &m = merges[i];
        std::string a, b;
        if (m.is_string()) { // "a b": exactly one space, as HF requires
            const std::string s = m.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                json_fail(mw, "expected \"<left> <right>\", got '" + s + "'");
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            a = m[0].get<std::string>();
            b = m[1].get<std::string>();
        } else {
            json_fail(mw, "expected \"<left> <right>\" or [left, right]");
        }
        const int32_t ia = require_id(a, mw), ib = require_id(b, mw);
        // The right part carries the continuing-subword prefix, which the merged token does not repeat.
        const std::string merged =
            a + (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0 ? b.substr(prefix_.size()) : b);
        merges_[pair_key(ia, ib)] = {static_cast<int32_t>(i), require_id(merged, mw)};
    }
}

int32_t bpe_model::require_id(const std::string &token, const json_where &w) const {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) json_fail(w, "token '" + token + "' is not in the vocabulary");
    return it->second;
}

std::optional<int64_t> bpe_model::token_to_id(const std::string &token) const {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

const std::string *bpe_model::id_to_token(int64_t id) const {
    if (id < 0 || id >= static_cast<int64_t>(tokens_.size()) || !present_[id]) return nullptr;
    return &tokens_[id];
}

void bpe_model::initial_symbols(std::string_view word, std::vector<int32_t> &ids) const {
    std::optional<int32_t> unk_id;
    bool pending_unk = false; // an unknown run waiting to be emitted (fuse_unk joins the run)
    auto flush_unk = [&] {
        if (pending_unk) ids.push_back(*unk_id);
        pending_unk = false;
    };
    std::string s;
    size_t i = 0;
    while (i < word.size()) {
        const size_t start = i;
        i += utf8_char_len(static_cast<unsigned char>(word[i]));
        const std::string_view ch = word.substr(start, i - start);
        // With a continuing-subword prefix / end-of-word suffix the symbol carries them.
        s.assign(start > 0 ? prefix_ : std::string());
        s.append(ch);
        if (i >= word.size()) s += suffix_;
        auto it = vocab_.find(s);
        if (it != vocab_.end()) {
            flush_unk();
            ids.push_back(it->second);
            continue;
        }
        if (byte_fallback_) {
            bool all = true;
            for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
            if (all) {
                flush_unk();
                for (char c : ch) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
                continue;
            }
        }
        // No unknown token: HF drops the character (byte-level vocabularies never get here).
        if (!unk_token_) continue;
        if (!unk_id) {
            auto u = vocab_.find(*unk_token_);
            if (u == vocab_.end()) fail("tokenizer: unk_token '{}' is not in the vocabulary", *unk_token_);
            unk_id = u->second;
        }
        if (!fuse_unk_) flush_unk();
        pending_unk = true;
    }
    flush_unk();
}

void bpe_model::apply_merges(std::vector<int32_t> &ids) const {
    const int32_t n = static_cast<int32_t>(ids.size());
    if (n < 2) return;
    // The symbols as a linked list over the original positions; a merge keeps the left slot.
    std::vector<int32_t> prev(n), next(n);
    for (int32_t k = 0; k < n; ++k) prev[k] = k - 1, next[k] = k + 1 < n ? k + 1 : -1;

    // Candidate merges: lowest rank first, then leftmost — the order HF applies them in.
    struct cand {
        int32_t rank, pos, left, right, merged;
        bool operator>(const cand &o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<cand, std::vector<cand>, std::greater<cand>> queue;
    auto consider = [&](int32_t pos) {
        if (pos < 0 || next[pos] < 0) return;
        auto it = merges_.find(pair_key(ids[pos], ids[next[pos]]));
        if (it != merges_.end()) queue.push({it->second.rank, pos, ids[pos], ids[next[pos]], it->second.id});
    };
    for (int32_t k = 0; k + 1 < n; ++k) consider(k);

    while (!queue.empty()) {
        const cand c = queue.top();
        queue.pop();
        // Entries go stale when a neighbour merged first; check the pair is still there.
        const int32_t r = next[c.pos];
        if (ids[c.pos] != c.left || r < 0 || ids[r] != c.right) continue;
        ids[c.pos] = c.merged;
        ids[r] = -1; // removed
        next[c.pos] = next[r];
        if (next[r] >= 0) prev[next[r]] = c.pos;
        consider(prev[c.pos]);
        consider(c.pos);
    }
    size_t out = 0;
    for (int32_t k = 0; k >= 0; k = next[k]) ids[out++] = ids[k];
    ids.resize(out);
}

void bpe_model::tokenize(std::string_view word, std::vector<int64_t> &out) const {
    if (word.empty()) return;
    const std::string key(word);
    // Llama 3: a word that is itself a token is emitted whole, whatever the merges would give.
    if (ignore_merges_) {
        auto it = vocab_.find(key);
        if (it != vocab_.end()) {
            out.push_back(it->second);
            return;
        }
    }
    const bool cacheable = word.size() <= cache_max_word;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(key);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    ids.reserve(word.size());
    initial_symbols(word, ids);
    apply_merges(ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (cache_.size() < cache_capacity) cache_.emplace(key, std::move(ids));
    }
}

} // namespace llmc
