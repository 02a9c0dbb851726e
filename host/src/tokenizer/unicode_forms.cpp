#include "tokenizer/unicode_forms.h"

#include "util/error.h"

#include <unicode/bytestream.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <cstdint>

namespace llmc {

namespace {

// ICU sizes strings with int32_t.
icu::StringPiece piece(const std::string &text) {
    if (text.size() > static_cast<size_t>(INT32_MAX))
        fail("tokenizer: a text of {} bytes is too long to normalize", text.size());
    return icu::StringPiece(text.data(), static_cast<int32_t>(text.size()));
}

const icu::Normalizer2 &instance(unicode_form form) {
    UErrorCode st = U_ZERO_ERROR;
    const icu::Normalizer2 *n = nullptr;
    switch (form) {
    case unicode_form::nfc: n = icu::Normalizer2::getNFCInstance(st); break;
    case unicode_form::nfd: n = icu::Normalizer2::getNFDInstance(st); break;
    case unicode_form::nfkc: n = icu::Normalizer2::getNFKCInstance(st); break;
    case unicode_form::nfkd: n = icu::Normalizer2::getNFKDInstance(st); break;
    }
    if (U_FAILURE(st) || n == nullptr) fail("ICU: cannot load the normalization data: {}", u_errorName(st));
    return *n;
}

} // namespace

std::string unicode_normalize(const std::string &text, unicode_form form) {
    const icu::Normalizer2 &n = instance(form);
    UErrorCode st = U_ZERO_ERROR;
    const icu::StringPiece in = piece(text);
    // Most text is already normalized; the quick check avoids building a copy.
    if (n.isNormalizedUTF8(in, st) && U_SUCCESS(st)) return text;
    st = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
    n.normalizeUTF8(0, in, sink, nullptr, st);
    if (U_FAILURE(st)) fail("ICU: normalization failed: {}", u_errorName(st));
    return out;
}

std::string unicode_lowercase(const std::string &text) {
    icu::UnicodeString s = icu::UnicodeString::fromUTF8(piece(text));
    s.toLower(icu::Locale::getRoot());
    std::string out;
    s.toUTF8String(out);
    return out;
}

} // namespace llmc
