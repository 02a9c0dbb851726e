#include "tokenizer/split.h"

#include <algorithm>

namespace llmc {

split_behavior parse_split_behavior(const std::string &name, const json_where &w) {
    if (name == "Removed") return split_behavior::removed;
    if (name == "Isolated") return split_behavior::isolated;
    if (name == "MergedWithPrevious") return split_behavior::merged_with_previous;
    if (name == "MergedWithNext") return split_behavior::merged_with_next;
    if (name == "Contiguous") return split_behavior::contiguous;
    json_fail(w, "unknown split behavior '" + name + "'");
}

namespace {

struct part {
    byte_range r;
    bool delimiter;
};

// The text as alternating gaps and matches covering every byte.
std::vector<part> cover(size_t size, const std::vector<byte_range> &matches, bool invert) {
    std::vector<part> parts;
    size_t prev = 0;
    for (const auto &m : matches) {
        if (m.first > prev) parts.push_back({{prev, m.first}, invert});
        parts.push_back({m, !invert});
        prev = m.second;
    }
    if (prev < size) parts.push_back({{prev, size}, invert});
    return parts;
}

} // namespace

std::vector<byte_range> split_ranges(size_t size, const std::vector<byte_range> &matches, split_behavior behavior,
                                     bool invert) {
    const std::vector<part> parts = cover(size, matches, invert);
    std::vector<byte_range> out;
    switch (behavior) {
    case split_behavior::removed:
        for (const auto &p : parts)
            if (!p.delimiter) out.push_back(p.r);
        break;
    case split_behavior::isolated:
        for (const auto &p : parts) out.push_back(p.r);
        break;
    case split_behavior::merged_with_previous: {
        // A delimiter joins the piece before it, unless that piece is itself a delimiter.
        bool prev_delim = false;
        for (const auto &p : parts) {
            if (p.delimiter && !prev_delim && !out.empty())
                out.back().second = p.r.second;
            else
                out.push_back(p.r);
            prev_delim = p.delimiter;
        }
        break;
    }
    case split_behavior::merged_with_next: {
        // The mirror image: walk backwards, a delimiter joins the piece after it.
        bool next_delim = false;
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
            if (it->delimiter && !next_delim && !out.empty())
                out.back().first = it->r.first;
            else
                out.push_back(it->r);
            next_delim = it->delimiter;
        }
        std::reverse(out.begin(), out.end());
        break;
    }
    case split_behavior::contiguous: {
        // Runs of adjacent pieces of the same kind become one piece (with `invert`, adjacent
        // matches are such a run too).
        bool prev_delim = false;
        for (const auto &p : parts) {
            if (p.delimiter == prev_delim && !out.empty())
                out.back().second = p.r.second;
            else
                out.push_back(p.r);
            prev_delim = p.delimiter;
        }
        break;
    }
    }
    std::vector<byte_range> kept;
    kept.reserve(out.size());
    for (const auto &r : out)
        if (r.second > r.first) kept.push_back(r);
    return kept;
}

} // namespace llmc
