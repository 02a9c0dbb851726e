// tokenizer.json's regexes are written for Oniguruma, which HF compiles them with. PCRE2 reads the
// same syntax, but some shorthands stand for other sets there:
//   \s  PCRE2 adds U+180E (its fixed horizontal-space list); Oniguruma: Unicode White_Space
//   \w  PCRE2 10.42: letters, numbers, "_"; Oniguruma: Alphabetic, marks, decimal digits,
//       connector punctuation (and, outside classes, the Latin-1 digits ²³¹¼½¾)
//   \h  PCRE2: horizontal space; Oniguruma: a hex digit
//   \b  follows \w
// This rewrites them into explicit PCRE2 sets, so that Llama 3's and Qwen's \s agree with HF.
// (^ and $ are line anchors in Oniguruma; regex compiles with PCRE2_MULTILINE for that.)
#pragma once

#include <string>

namespace llmc {

std::string oniguruma_to_pcre2(const std::string &pattern);

} // namespace llmc
