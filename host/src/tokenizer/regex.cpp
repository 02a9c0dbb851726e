#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include "tokenizer/onig_syntax.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

#include <pcre2.h>

#include <cctype>

namespace llmc {

struct regex::impl {
    pcre2_code *code = nullptr;
    bool jit = false;
};

namespace {

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char *>(buf);
}

// Match data sized for the pattern; freed with the scope.
struct match_data {
    pcre2_match_data *md;
    explicit match_data(const pcre2_code *code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
        if (md == nullptr) throw std::bad_alloc();
    }
    ~match_data() { pcre2_match_data_free(md); }
};

// One match attempt from `start`. JIT first; its stack is small and a pathological subject
// (a huge run of spaces against `\s+(?!\S)`) can exhaust it, so fall back to the interpreter,
// which uses the heap.
int match_once(const pcre2_code *code, std::string_view text, size_t start, uint32_t options, pcre2_match_data *md) {
    const auto *subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    int rc = pcre2_match(code, subject, text.size(), start, options | PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code, subject, text.size(), start, options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
    return rc;
}

} // namespace

regex::regex(const std::string &pattern, const std::string &where) : pattern_(pattern), impl_(new impl) {
    const std::string translated = oniguruma_to_pcre2(pattern);
    // Oniguruma's conventions: "." excludes only "\n", and ^/$ are line anchors.
    pcre2_compile_context *ctx = pcre2_compile_context_create(nullptr);
    if (ctx == nullptr) throw std::bad_alloc();
    pcre2_set_newline(ctx, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE offset = 0;
    impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &offset, ctx);
    pcre2_compile_context_free(ctx);
    if (impl_->code == nullptr) {
        // The offset is in the translated pattern; show it when it differs from the original.
        const std::string shown = translated == pattern ? "" : " (as PCRE2: '" + translated + "')";
        fail("{}: bad regex '{}'{}: {} at offset {}", where, pattern, shown, pcre2_message(err), offset);
    }
    impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0; // without JIT it still works, slower
}

regex::~regex() {
    if (impl_ && impl_->code != nullptr) pcre2_code_free(impl_->code);
}

void regex::find_all(std::string_view text, std::vector<range> &out) const {
    match_data m(impl_->code);
    size_t pos = 0;
    while (pos <= text.size()) {
        const int rc = match_once(impl_->code, text, pos, 0, m.md);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("regex '{}': matching failed: {}", pattern_, pcre2_message(rc));
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m.md);
        const size_t b = ov[0], e = ov[1];
        out.emplace_back(b, e);
        if (e > b) {
            pos = e;
        } else { // an empty match: step over one character so the scan moves on
            if (e >= text.size()) break;
            pos = e + utf8_char_len(static_cast<unsigned char>(text[e]));
        }
    }
}

bool regex::matches_at(std::string_view text, size_t pos) const {
    match_data m(impl_->code);
    const int rc = match_once(impl_->code, text, pos, PCRE2_ANCHORED, m.md);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) fail("regex '{}': matching failed: {}", pattern_, pcre2_message(rc));
    return true;
}

std::string regex_escape(std::string_view literal) {
    // \Q...\E would break on a literal that contains \E; escape character by character instead.
    // In PCRE2 a backslash before any ASCII punctuation means that character literally.
    std::string out;
    for (char c : literal) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x80 && std::ispunct(u)) out += '\\';
        out += c;
    }
    return out;
}

} // namespace llmc
