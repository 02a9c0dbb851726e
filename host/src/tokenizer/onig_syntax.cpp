#include "tokenizer/onig_syntax.h"

#include <cstring>

namespace llmc {

namespace {

#define LLMC_WORD_IN_CLASS R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc})"
#define LLMC_WORD_OUTSIDE LLMC_WORD_IN_CLASS R"(\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})"
#define LLMC_WORD_CLASS "[" LLMC_WORD_OUTSIDE "]"

// The replacement for "\<e>" outside a character class, or nullptr to keep it.
const char *outside_class(char e) {
    switch (e) {
    case 's': return R"(\p{White_Space})";
    case 'S': return R"(\P{White_Space})";
    case 'd': return R"(\p{Nd})";
    case 'D': return R"(\P{Nd})";
    case 'w': return LLMC_WORD_CLASS;
    case 'W': return "[^" LLMC_WORD_OUTSIDE "]";
    case 'h': return "[0-9A-Fa-f]";
    case 'H': return "[^0-9A-Fa-f]";
    case 'b':
        return "(?:(?<!" LLMC_WORD_CLASS ")(?=" LLMC_WORD_CLASS ")|(?<=" LLMC_WORD_CLASS ")(?!" LLMC_WORD_CLASS "))";
    case 'B':
        return "(?:(?<!" LLMC_WORD_CLASS ")(?!" LLMC_WORD_CLASS ")|(?<=" LLMC_WORD_CLASS ")(?=" LLMC_WORD_CLASS "))";
    default: return nullptr;
    }
}

// Inside a class only what can be written as members; \W and \H (complements) keep PCRE2's sense.
const char *inside_class(char e) {
    switch (e) {
    case 's': return R"(\p{White_Space})";
    case 'S': return R"(\P{White_Space})";
    case 'd': return R"(\p{Nd})";
    case 'D': return R"(\P{Nd})";
    case 'w': return LLMC_WORD_IN_CLASS;
    case 'h': return "0-9A-Fa-f";
    default: return nullptr;
    }
}

} // namespace

std::string oniguruma_to_pcre2(const std::string &p) {
    std::string out;
    out.reserve(p.size() * 2);
    bool in_class = false;
    size_t i = 0;
    while (i < p.size()) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const char e = p[i + 1];
            if (e == 'Q') { // literal text up to \E, untouched
                const size_t end = p.find("\\E", i + 2);
                const size_t stop = end == std::string::npos ? p.size() : end + 2;
                out.append(p, i, stop - i);
                i = stop;
                continue;
            }
            const char *rep = in_class ? inside_class(e) : outside_class(e);
            if (rep != nullptr)
                out += rep;
            else
                out.append(p, i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            out += c;
            ++i;
            if (i < p.size() && p[i] == '^') out += p[i++];
            if (i < p.size() && p[i] == ']') out += p[i++]; // a leading ']' is a member
            continue;
        }
        if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') { // [:alpha:]
            const size_t end = p.find(":]", i + 2);
            const size_t stop = end == std::string::npos ? i + 1 : end + 2;
            out.append(p, i, stop - i);
            i = stop;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out += c;
        ++i;
    }
    return out;
}

} // namespace llmc
