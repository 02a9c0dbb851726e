#include "tokenizer/decoders.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

#include <cctype>

namespace llmc {

namespace {

class sequence_decoder : public decoder {
  public:
    explicit sequence_decoder(std::vector<std::unique_ptr<decoder>> parts) : parts_(std::move(parts)) {}
    void decode_chain(std::vector<std::string> &tokens) const override {
        for (const auto &p : parts_) p->decode_chain(tokens);
    }

  private:
    std::vector<std::unique_ptr<decoder>> parts_;
};

// Back from the byte alphabet to bytes, then to text; bytes that do not form UTF-8 (a token
// list cut inside a character) become U+FFFD. A token with characters outside the alphabet
// (an added token such as "<|im_start|>" written with other characters) keeps its own bytes.
class byte_level_decoder : public decoder {
  public:
    void decode_chain(std::vector<std::string> &tokens) const override {
        std::string bytes;
        for (const auto &t : tokens) {
            const size_t mark = bytes.size();
            bool mapped = true;
            for (size_t i = 0; i < t.size() && mapped;) {
                const auto b = byte_level_byte(utf8_next(t, i));
                if (b)
                    bytes += static_cast<char>(*b);
                else
                    mapped = false;
            }
            if (!mapped) {
                bytes.resize(mark);
                bytes += t;
            }
        }
        tokens.assign(1, utf8_lossy(bytes));
    }
};

class metaspace_decoder : public decoder {
  public:
    metaspace_decoder(std::string replacement, bool strip_first)
        : rep_(std::move(replacement)), strip_first_(strip_first) {}
    void decode_chain(std::vector<std::string> &tokens) const override {
        for (size_t i = 0; i < tokens.size(); ++i) {
            std::string s;
            const std::string &t = tokens[i];
            for (size_t k = 0; k < t.size();) {
                if (t.compare(k, rep_.size(), rep_) == 0) {
                    s += ' ';
                    k += rep_.size();
                } else {
                    s += t[k++];
                }
            }
            // The space the pre-tokenizer prepended to the text.
            if (i == 0 && strip_first_ && !s.empty() && s[0] == ' ') s.erase(0, 1);
            tokens[i] = std::move(s);
        }
    }

  private:
    std::string rep_;
    bool strip_first_;
};

class replace_decoder : public decoder {
  public:
    replace_decoder(const json_pattern &p, std::string content, const json_where &w)
        : re_(p.is_regex ? p.text : regex_escape(p.text), w.label()), content_(std::move(content)) {}
    void decode_chain(std::vector<std::string> &tokens) const override {
        std::vector<regex::range> m;
        for (auto &t : tokens) {
            m.clear();
            re_.find_all(t, m);
            if (m.empty()) continue;
            std::string s;
            size_t prev = 0;
            for (auto [b, e] : m) {
                if (e == b) continue;
                s.append(t, prev, b - prev);
                s += content_;
                prev = e;
            }
            s.append(t, prev, std::string::npos);
            t = std::move(s);
        }
    }

  private:
    regex re_;
    std::string content_;
};

// Runs of "<0xXX>" tokens become the text their bytes spell; a run that is not UTF-8 gives one
// U+FFFD per byte token, as HF does.
class byte_fallback_decoder : public decoder {
  public:
    void decode_chain(std::vector<std::string> &tokens) const override {
        std::vector<std::string> out;
        std::string run;
        size_t run_tokens = 0;
        auto flush = [&] {
            if (run_tokens == 0) return;
            if (utf8_invalid_offset(run) == std::string_view::npos)
                out.push_back(run);
            else
                out.insert(out.end(), run_tokens, "\xEF\xBF\xBD");
            run.clear();
            run_tokens = 0;
        };
        for (auto &t : tokens) {
            int byte = -1;
            if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])))
                byte = std::stoi(t.substr(3, 2), nullptr, 16);
            if (byte >= 0) {
                run += static_cast<char>(byte);
                ++run_tokens;
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        tokens = std::move(out);
    }
};

class fuse_decoder : public decoder {
  public:
    void decode_chain(std::vector<std::string> &tokens) const override {
        std::string all;
        for (const auto &t : tokens) all += t;
        tokens.assign(1, all);
    }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token
// (Llama 2: the space that stood for the prepended "▁").
class strip_decoder : public decoder {
  public:
    strip_decoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
    void decode_chain(std::vector<std::string> &tokens) const override {
        for (auto &t : tokens) {
            size_t b = 0, e = t.size();
            for (size_t n = 0; n < start_ && b < e; ++n) {
                size_t k = b;
                if (utf8_next(t, k) != content_) break;
                b = k;
            }
            for (size_t n = 0; n < stop_ && e > b; ++n) {
                size_t k = e;
                if (utf8_prev(t, k) != content_) break;
                e = k;
            }
            t = t.substr(b, e - b);
        }
    }

  private:
    char32_t content_;
    size_t start_, stop_;
};

// Original BPE with an end-of-word suffix ("</w>"): the suffix marks a space.
class bpe_suffix_decoder : public decoder {
  public:
    explicit bpe_suffix_decoder(std::string suffix) : suffix_(std::move(suffix)) {}
    void decode_chain(std::vector<std::string> &tokens) const override {
        for (size_t i = 0; i < tokens.size(); ++i) {
            std::string &t = tokens[i];
            const std::string with = i + 1 == tokens.size() ? "" : " ";
            std::string s;
            for (size_t k = 0; k < t.size();) {
                if (!suffix_.empty() && t.compare(k, suffix_.size(), suffix_) == 0) {
                    s += with;
                    k += suffix_.size();
                } else {
                    s += t[k++];
                }
            }
            t = std::move(s);
        }
    }

  private:
    std::string suffix_;
};

bool metaspace_strips_first(const nlohmann::json &j, const json_where &w) {
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null())
        return json_string(j, "prepend_scheme", w, "always") != "never";
    return json_bool(j, "add_prefix_space", w, true);
}

} // namespace

std::unique_ptr<decoder> make_decoder(const nlohmann::json &j, const json_where &w) {
    if (j.is_null()) return nullptr;
    const std::string type = json_type(j, w);
    if (type == "Sequence") {
        const nlohmann::json &list = json_require_array(j, "decoders", w);
        std::vector<std::unique_ptr<decoder>> parts;
        for (size_t i = 0; i < list.size(); ++i)
            if (auto p = make_decoder(list[i], (w / "decoders")[i])) parts.push_back(std::move(p));
        return std::make_unique<sequence_decoder>(std::move(parts));
    }
    if (type == "ByteLevel") return std::make_unique<byte_level_decoder>();
    if (type == "Metaspace")
        return std::make_unique<metaspace_decoder>(json_string(j, "replacement", w, "\u2581"),
                                                   metaspace_strips_first(j, w));
    if (type == "Replace")
        return std::make_unique<replace_decoder>(json_read_pattern(j, w), json_require_string(j, "content", w), w);
    if (type == "ByteFallback") return std::make_unique<byte_fallback_decoder>();
    if (type == "Fuse") return std::make_unique<fuse_decoder>();
    if (type == "Strip") {
        const std::string content = json_require_string(j, "content", w);
        size_t i = 0;
        if (content.empty() || (utf8_next(content, i), i != content.size()))
            json_fail(w / "content", "expected a single character");
        i = 0;
        const int64_t start = json_int(j, "start", w, 0), stop = json_int(j, "stop", w, 0);
        if (start < 0 || stop < 0) json_fail(w, "start and stop must not be negative");
        return std::make_unique<strip_decoder>(utf8_next(content, i), static_cast<size_t>(start),
                                               static_cast<size_t>(stop));
    }
    if (type == "BPEDecoder") return std::make_unique<bpe_suffix_decoder>(json_string(j, "suffix", w, "</w>"));
    json_unsupported(w, "decoder", type);
}

std::string clean_up_tokenization_spaces(std::string text) {
    static const char *const pairs[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},   {" ,", ","},
                                           {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"},
                                           {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto &p : pairs) {
        const std::string from = p[0], to = p[1];
        std::string out;
        size_t prev = 0, at;
        while ((at = text.find(from, prev)) != std::string::npos) {
            out.append(text, prev, at - prev);
            out += to;
            prev = at + from.size();
        }
        out.append(text, prev, std::string::npos);
        text = std::move(out);
    }
    return text;
}

} // namespace llmc
