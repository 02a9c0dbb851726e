// HF's SplitDelimiterBehavior: how a text is cut at the matches of a pattern, and what happens
// to the matched delimiters. Shared by the Split, Punctuation, Digits and Metaspace pre-tokenizers.
#pragma once

#include "tokenizer/json_fields.h"

#include <string>
#include <utility>
#include <vector>

namespace llmc {

enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous".
split_behavior parse_split_behavior(const std::string &name, const json_where &w);

using byte_range = std::pair<size_t, size_t>;

// The pieces of a text of length `size` cut at `matches` (sorted, non-overlapping). With
// `invert` the matches are the pieces to keep and the gaps the delimiters. Empty pieces are
// dropped, as HF does.
std::vector<byte_range> split_ranges(size_t size, const std::vector<byte_range> &matches, split_behavior behavior,
                                     bool invert);

} // namespace llmc
