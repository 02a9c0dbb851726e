// UTF-8 helpers for the tokenizer: the pipeline works on UTF-8 bytes throughout and only looks
// at code points where a rule is defined on characters (BPE's initial symbols, strip, lstrip).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace llmc {

// Byte offset of the first ill-formed sequence (overlong, surrogate, > U+10FFFF, truncated),
// or std::string_view::npos when `s` is valid UTF-8.
size_t utf8_invalid_offset(std::string_view s);

// Length in bytes of the character starting with lead byte `c` (1 for stray bytes, so a
// loop always advances).
inline size_t utf8_char_len(unsigned char c) {
    if (c < 0xC0) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

// The code point at s[i] (s valid UTF-8); i advances past it.
char32_t utf8_next(std::string_view s, size_t &i);
// The code point that ends at s[end) (s valid UTF-8); end moves back to its first byte.
char32_t utf8_prev(std::string_view s, size_t &end);

void utf8_append(std::string &out, char32_t cp);

// Bytes to text the way WHATWG's TextDecoder and Rust's from_utf8_lossy do: each maximal
// ill-formed subpart becomes one U+FFFD. Byte-level decoding relies on this exact rule.
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space, the set Rust's char::is_whitespace uses (HF's strip, lstrip/rstrip).
bool is_unicode_whitespace(char32_t cp);

} // namespace llmc
