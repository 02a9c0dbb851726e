#include "tokenizer/utf8.h"

namespace llmc {

namespace {

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed sequence at s[i], or 0 when ill-formed. `prefix` receives how many
// bytes belong to the maximal ill-formed subpart (at least 1) when it is.
size_t well_formed_len(std::string_view s, size_t i, size_t &prefix) {
    const auto c = static_cast<unsigned char>(s[i]);
    prefix = 1;
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte (Unicode table 3-7)
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c == 0xE0)
        need = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        need = 3;
    else if (c == 0xED)
        need = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF)
        need = 3;
    else if (c == 0xF0)
        need = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        need = 4;
    else if (c == 0xF4)
        need = 4, hi = 0x8F;
    else
        return 0;
    size_t k = 1;
    for (; k < need && i + k < s.size(); ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        const bool ok = k == 1 ? (b >= lo && b <= hi) : is_cont(b);
        if (!ok) break;
    }
    if (k == need) return need;
    prefix = k;
    return 0;
}

} // namespace

size_t utf8_invalid_offset(std::string_view s) {
    size_t i = 0, prefix;
    while (i < s.size()) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const size_t n = well_formed_len(s, i, prefix);
        if (n == 0) return i;
        i += n;
    }
    return std::string_view::npos;
}

char32_t utf8_next(std::string_view s, size_t &i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = utf8_char_len(c);
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += n;
    return cp;
}

char32_t utf8_prev(std::string_view s, size_t &end) {
    size_t start = end - 1;
    while (start > 0 && is_cont(static_cast<unsigned char>(s[start]))) --start;
    size_t i = start;
    const char32_t cp = utf8_next(s, i);
    end = start;
    return cp;
}

void utf8_append(std::string &out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string utf8_lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    size_t i = 0, prefix;
    while (i < bytes.size()) {
        const size_t n = well_formed_len(bytes, i, prefix);
        if (n > 0) {
            out.append(bytes.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            i += prefix;
        }
    }
    return out;
}

bool is_unicode_whitespace(char32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

} // namespace llmc
