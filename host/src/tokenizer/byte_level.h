// GPT-2's byte-level alphabet: every byte is shown as a printable character so that byte-level
// BPE vocabularies hold only visible strings (space is "Ġ", newline "Ċ").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace llmc {

// The UTF-8 of the character that stands for byte b.
const std::string &byte_level_char(unsigned char b);
// Each byte of `bytes` replaced by its character.
std::string byte_level_encode(std::string_view bytes);
// The byte a character stands for; nullopt for characters outside the alphabet.
std::optional<unsigned char> byte_level_byte(char32_t cp);

} // namespace llmc
