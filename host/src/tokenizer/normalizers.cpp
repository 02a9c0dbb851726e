#include "tokenizer/normalizers.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_forms.h"
#include "tokenizer/utf8.h"

#include <vector>

namespace llmc {

namespace {

class sequence_normalizer : public normalizer {
  public:
    explicit sequence_normalizer(std::vector<std::unique_ptr<normalizer>> parts) : parts_(std::move(parts)) {}
    std::string normalize(std::string text) const override {
        for (const auto &p : parts_) text = p->normalize(std::move(text));
        return text;
    }

  private:
    std::vector<std::unique_ptr<normalizer>> parts_;
};

class form_normalizer : public normalizer {
  public:
    explicit form_normalizer(unicode_form form) : form_(form) {}
    std::string normalize(std::string text) const override { return unicode_normalize(text, form_); }

  private:
    unicode_form form_;
};

class lowercase_normalizer : public normalizer {
  public:
    std::string normalize(std::string text) const override { return unicode_lowercase(text); }
};

// HF prepends only to non-empty text, so an empty stretch between two added tokens stays empty.
class prepend_normalizer : public normalizer {
  public:
    explicit prepend_normalizer(std::string prefix) : prefix_(std::move(prefix)) {}
    std::string normalize(std::string text) const override { return text.empty() ? text : prefix_ + text; }

  private:
    std::string prefix_;
};

class replace_normalizer : public normalizer {
  public:
    replace_normalizer(const json_pattern &p, std::string content, const json_where &w)
        : re_(p.is_regex ? p.text : regex_escape(p.text), w.label()), content_(std::move(content)) {}
    std::string normalize(std::string text) const override {
        std::vector<regex::range> m;
        re_.find_all(text, m);
        if (m.empty()) return text;
        std::string out;
        out.reserve(text.size() + m.size() * content_.size());
        size_t prev = 0;
        for (auto [b, e] : m) {
            if (e == b) continue; // an empty match replaces nothing
            out.append(text, prev, b - prev);
            out += content_;
            prev = e;
        }
        out.append(text, prev, std::string::npos);
        return out;
    }

  private:
    regex re_;
    std::string content_;
};

class strip_normalizer : public normalizer {
  public:
    strip_normalizer(bool left, bool right) : left_(left), right_(right) {}
    std::string normalize(std::string text) const override {
        size_t b = 0, e = text.size();
        if (left_) {
            while (b < e) {
                size_t i = b;
                if (!is_unicode_whitespace(utf8_next(text, i))) break;
                b = i;
            }
        }
        if (right_) {
            while (e > b) {
                size_t i = e;
                if (!is_unicode_whitespace(utf8_prev(text, i))) break;
                e = i;
            }
        }
        return text.substr(b, e - b);
    }

  private:
    bool left_, right_;
};

class byte_level_normalizer : public normalizer {
  public:
    std::string normalize(std::string text) const override { return byte_level_encode(text); }
};

} // namespace

std::unique_ptr<normalizer> make_normalizer(const nlohmann::json &j, const json_where &w) {
    if (j.is_null()) return nullptr;
    const std::string type = json_type(j, w);
    if (type == "Sequence") {
        const nlohmann::json &list = json_require_array(j, "normalizers", w);
        std::vector<std::unique_ptr<normalizer>> parts;
        for (size_t i = 0; i < list.size(); ++i)
            if (auto p = make_normalizer(list[i], (w / "normalizers")[i])) parts.push_back(std::move(p));
        return std::make_unique<sequence_normalizer>(std::move(parts));
    }
    if (type == "NFC") return std::make_unique<form_normalizer>(unicode_form::nfc);
    if (type == "NFD") return std::make_unique<form_normalizer>(unicode_form::nfd);
    if (type == "NFKC") return std::make_unique<form_normalizer>(unicode_form::nfkc);
    if (type == "NFKD") return std::make_unique<form_normalizer>(unicode_form::nfkd);
    if (type == "Lowercase") return std::make_unique<lowercase_normalizer>();
    if (type == "Prepend") return std::make_unique<prepend_normalizer>(json_require_string(j, "prepend", w));
    if (type == "Replace")
        return std::make_unique<replace_normalizer>(json_read_pattern(j, w), json_require_string(j, "content", w), w);
    if (type == "Strip")
        return std::make_unique<strip_normalizer>(json_bool(j, "strip_left", w, true),
                                                  json_bool(j, "strip_right", w, true));
    if (type == "ByteLevel") return std::make_unique<byte_level_normalizer>();
    json_unsupported(w, "normalizer", type);
}

} // namespace llmc
