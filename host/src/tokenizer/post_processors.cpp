#include "tokenizer/post_processors.h"

#include <cctype>
#include <sstream>

namespace llmc {

namespace {

// One item of a template: a sequence ($A) or a named special token.
struct template_item {
    bool sequence = false;
    std::string name; // "A"/"B" for sequences, the special token's key otherwise
};

// The string form: "[CLS] $A [SEP]", "$A:0 </s>:1", "$" (= $A).
std::vector<template_item> parse_template_string(const std::string &s) {
    std::vector<template_item> items;
    std::istringstream in(s);
    std::string piece;
    while (in >> piece) {
        const size_t colon = piece.rfind(':');
        if (colon != std::string::npos && colon + 1 < piece.size() &&
            piece.find_first_not_of("0123456789", colon + 1) == std::string::npos)
            piece.resize(colon); // the type id, which single-sequence ids do not carry
        if (!piece.empty() && piece[0] == '$') {
            const std::string id = piece.substr(1);
            items.push_back({true, id.empty() || std::isdigit(static_cast<unsigned char>(id[0])) ? "A" : id});
        } else {
            items.push_back({false, piece});
        }
    }
    return items;
}

std::vector<template_item> read_template(const nlohmann::json &t, const json_where &w) {
    if (t.is_string()) return parse_template_string(t.get<std::string>());
    if (!t.is_array()) json_fail(w, "expected a template string or array");
    std::vector<template_item> items;
    for (size_t i = 0; i < t.size(); ++i) {
        const nlohmann::json &it = t[i];
        if (it.is_object() && it.contains("Sequence"))
            items.push_back({true, json_require_string(it["Sequence"], "id", w[i] / "Sequence")});
        else if (it.is_object() && it.contains("SpecialToken"))
            items.push_back({false, json_require_string(it["SpecialToken"], "id", w[i] / "SpecialToken")});
        else
            json_fail(w[i], "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    return items;
}

special_wrap template_processing(const nlohmann::json &j, const json_where &w) {
    const std::vector<template_item> items = read_template(json_require(j, "single", w), w / "single");
    const nlohmann::json &specials = json_require(j, "special_tokens", w);
    if (!specials.is_object()) json_fail(w / "special_tokens", "expected an object");
    special_wrap out;
    int sequences = 0;
    for (const auto &item : items) {
        if (item.sequence) {
            if (item.name != "A") json_fail(w / "single", "a single-sequence template may only use $A");
            if (++sequences > 1) json_fail(w / "single", "$A appears more than once");
            continue;
        }
        auto it = specials.find(item.name);
        if (it == specials.end()) json_fail(w / "special_tokens", "no entry for '" + item.name + "'");
        const json_where sw = w / "special_tokens" / item.name;
        for (const auto &id : json_require_array(*it, "ids", sw)) {
            if (!id.is_number_integer()) json_fail(sw / "ids", "expected integers");
            (sequences == 0 ? out.prefix : out.suffix).push_back(id.get<int64_t>());
        }
    }
    if (sequences == 0) json_fail(w / "single", "the template has no $A");
    return out;
}

// BertProcessing / RobertaProcessing: {"cls": ["[CLS]", 101], "sep": ["[SEP]", 102]}.
int64_t pair_id(const nlohmann::json &j, const char *key, const json_where &w) {
    const nlohmann::json &p = json_require(j, key, w);
    if (!p.is_array() || p.size() != 2 || !p[1].is_number_integer()) json_fail(w / key, "expected [token, id]");
    return p[1].get<int64_t>();
}

} // namespace

special_wrap make_post_processor(const nlohmann::json &j, const json_where &w) {
    if (j.is_null()) return {};
    const std::string type = json_type(j, w);
    if (type == "TemplateProcessing") return template_processing(j, w);
    if (type == "ByteLevel") return {}; // it only adjusts offsets
    if (type == "BertProcessing" || type == "RobertaProcessing")
        return {{pair_id(j, "cls", w)}, {pair_id(j, "sep", w)}};
    if (type == "Sequence") {
        // Each processor wraps what the ones before it produced.
        special_wrap out;
        const nlohmann::json &list = json_require_array(j, "processors", w);
        for (size_t i = 0; i < list.size(); ++i) {
            special_wrap s = make_post_processor(list[i], (w / "processors")[i]);
            s.prefix.insert(s.prefix.end(), out.prefix.begin(), out.prefix.end());
            out.suffix.insert(out.suffix.end(), s.suffix.begin(), s.suffix.end());
            out.prefix = std::move(s.prefix);
        }
        return out;
    }
    json_unsupported(w, "post_processor", type);
}

} // namespace llmc
