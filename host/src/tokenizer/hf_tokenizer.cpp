#include "tokenizer/hf_tokenizer.h"

#include "tokenizer/utf8.h"
#include "util/error.h"

#include <unordered_set>

namespace llmc {

hf_tokenizer::hf_tokenizer(const nlohmann::json &tj, const std::string &file, const tokenizer_config &config) {
    const json_where top{file, ""};
    if (!tj.is_object()) json_fail(top, "expected a JSON object");
    auto field = [&](const char *key) -> const nlohmann::json & {
        static const nlohmann::json null_json;
        auto it = tj.find(key);
        return it == tj.end() ? null_json : *it;
    };
    model_ = std::make_unique<bpe_model>(json_require(tj, "model", top), top / "model");
    normalizer_ = make_normalizer(field("normalizer"), top / "normalizer");
    pre_tokenizer_ = make_pre_tokenizer(field("pre_tokenizer"), top / "pre_tokenizer");
    added_ = std::make_unique<added_vocabulary>(field("added_tokens"), top / "added_tokens", normalizer_.get());
    decoder_ = make_decoder(field("decoder"), top / "decoder");
    wrap_ = make_post_processor(field("post_processor"), top / "post_processor");

    std::unordered_set<int64_t> ids;
    for (const auto &entry : model_->vocab()) ids.insert(entry.second);
    for (const auto &a : added_->tokens()) ids.insert(a.id);
    vocab_size_ = static_cast<int64_t>(ids.size());

    // BOS/EOS are the config's strings; where no file names them, what the template puts first
    // and last.
    if (config.bos_named)
        bos_ = config.bos_token ? token_to_id(*config.bos_token) : std::nullopt;
    else if (!wrap_.prefix.empty())
        bos_ = wrap_.prefix.front();
    if (config.eos_named)
        eos_ = config.eos_token ? token_to_id(*config.eos_token) : std::nullopt;
    else if (!wrap_.suffix.empty())
        eos_ = wrap_.suffix.back();
    // Llama 2's tokenizer_config.json switches decide, as transformers' LlamaTokenizerFast
    // rebuilds its post-processor from them.
    if (config.add_bos_token.has_value() || config.add_eos_token.has_value()) {
        wrap_ = {};
        if (config.add_bos_token.value_or(false) && bos_) wrap_.prefix.push_back(*bos_);
        if (config.add_eos_token.value_or(false) && eos_) wrap_.suffix.push_back(*eos_);
    }
    clean_up_ = config.clean_up_tokenization_spaces;
}

std::optional<std::string> hf_tokenizer::id_to_token(int64_t id) const {
    if (const added_token *a = added_->find(id)) return a->content;
    if (const std::string *t = model_->id_to_token(id)) return *t;
    return std::nullopt;
}

std::optional<int64_t> hf_tokenizer::token_to_id(const std::string &token) const {
    if (const added_token *a = added_->find(token)) return a->id;
    return model_->token_to_id(token);
}

bool hf_tokenizer::is_special(int64_t id) const {
    const added_token *a = added_->find(id);
    return a != nullptr && a->special;
}

void hf_tokenizer::encode_plain(std::string_view text, bool at_start, std::vector<int64_t> &ids) const {
    const std::string normalized = normalizer_ ? normalizer_->normalize(std::string(text)) : std::string(text);
    std::vector<pre_token> pieces;
    for (const text_span &s : added_->split(normalized, true)) {
        if (s.token >= 0) {
            ids.push_back(added_->tokens()[s.token].id);
            continue;
        }
        pieces.clear();
        pieces.push_back({normalized.substr(s.begin, s.end - s.begin), at_start && s.begin == 0});
        if (pre_tokenizer_) pre_tokenizer_->apply(pieces);
        for (const auto &p : pieces) model_->tokenize(p.text, ids);
    }
}

std::vector<int64_t> hf_tokenizer::encode(const std::string &text, bool add_special_tokens) const {
    // PCRE2 runs without its own UTF-8 check (per call it would make long texts quadratic).
    const size_t bad = utf8_invalid_offset(text);
    if (bad != std::string_view::npos) fail("tokenizer: the text is not valid UTF-8 (at byte {})", bad);
    std::vector<int64_t> ids;
    if (add_special_tokens) ids = wrap_.prefix;
    for (const text_span &s : added_->split(text, false)) {
        if (s.token >= 0)
            ids.push_back(added_->tokens()[s.token].id);
        else
            encode_plain(std::string_view(text).substr(s.begin, s.end - s.begin), s.begin == 0, ids);
    }
    if (add_special_tokens) ids.insert(ids.end(), wrap_.suffix.begin(), wrap_.suffix.end());
    return ids;
}

std::string hf_tokenizer::decode(const std::vector<int64_t> &ids, bool skip_special_tokens) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int64_t id : ids) {
        if (const added_token *a = added_->find(id)) {
            if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
        } else if (const std::string *t = model_->id_to_token(id)) {
            tokens.push_back(*t);
        }
        // Ids outside the vocabulary are skipped, as HF does (models pad their embeddings).
    }
    if (!decoder_) { // HF joins with spaces when there is no decoder
        std::string out;
        for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
        return out;
    }
    decoder_->decode_chain(tokens);
    std::string out;
    for (const auto &t : tokens) out += t;
    return out;
}

} // namespace llmc
