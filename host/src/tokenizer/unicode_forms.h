// Unicode normalization forms and lowercasing, via ICU (the tables are Unicode's own; writing
// them by hand would only be a worse copy).
#pragma once

#include <string>

namespace llmc {

enum class unicode_form { nfc, nfd, nfkc, nfkd };

// `text` (valid UTF-8) in the given normalization form.
std::string unicode_normalize(const std::string &text, unicode_form form);
// Unicode's default (locale-independent) full lowercase mapping, as Rust's str::to_lowercase.
std::string unicode_lowercase(const std::string &text);

} // namespace llmc
