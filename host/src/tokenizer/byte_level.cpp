#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

#include <array>

namespace llmc {

namespace {

// Bytes that are printable and not whitespace keep their own code point; the other 68 take
// U+0100.. in byte order. This is the fixed table every byte-level BPE vocabulary was built on.
bool keeps_own_char(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

struct tables {
    std::array<std::string, 256> chars;
    std::array<int, 0x200> bytes; // code point -> byte, -1 outside the alphabet (all are < U+0144)
    tables() {
        bytes.fill(-1);
        unsigned next = 0x100;
        for (unsigned b = 0; b < 256; ++b) {
            const char32_t cp = keeps_own_char(b) ? b : next++;
            utf8_append(chars[b], cp);
            bytes[cp] = static_cast<int>(b);
        }
    }
};

const tables &get_tables() {
    static const tables t;
    return t;
}

} // namespace

const std::string &byte_level_char(unsigned char b) { return get_tables().chars[b]; }

std::string byte_level_encode(std::string_view bytes) {
    const tables &t = get_tables();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) out += t.chars[static_cast<unsigned char>(c)];
    return out;
}

std::optional<unsigned char> byte_level_byte(char32_t cp) {
    const tables &t = get_tables();
    if (cp >= t.bytes.size() || t.bytes[cp] < 0) return std::nullopt;
    return static_cast<unsigned char>(t.bytes[cp]);
}

} // namespace llmc
