// Typed access to tokenizer.json fields with errors that say which file and which field, e.g.
// "tokenizer /m/tokenizer.json: pre_tokenizer.pretokenizers[1].behavior: expected a string".
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace llmc {

// A position inside a JSON file, for messages.
struct json_where {
    std::string file;
    std::string path; // "model.merges[3]"; empty at the top level

    json_where operator/(const std::string &key) const { return {file, path.empty() ? key : path + "." + key}; }
    json_where operator[](size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }
    std::string str() const { return path.empty() ? file : file + ": " + path; }
    std::string label() const { return "tokenizer " + str(); } // how messages start
};

[[noreturn]] void json_fail(const json_where &w, const std::string &what);
// "unsupported <kind> type 'X'" — features of the format this implementation does not have.
[[noreturn]] void json_unsupported(const json_where &w, const std::string &kind, const std::string &type);

// The object's "type" string (an error when absent or not a string).
std::string json_type(const nlohmann::json &j, const json_where &w);

// Optional fields: the default when the key is absent or null; an error when of another type.
bool json_bool(const nlohmann::json &j, const char *key, const json_where &w, bool dflt);
std::string json_string(const nlohmann::json &j, const char *key, const json_where &w, const std::string &dflt);
int64_t json_int(const nlohmann::json &j, const char *key, const json_where &w, int64_t dflt);
// Required fields.
const nlohmann::json &json_require(const nlohmann::json &j, const char *key, const json_where &w);
std::string json_require_string(const nlohmann::json &j, const char *key, const json_where &w);
const nlohmann::json &json_require_array(const nlohmann::json &j, const char *key, const json_where &w);

// A Replace/Split "pattern": {"String": s} or {"Regex": r}.
struct json_pattern {
    bool is_regex = false;
    std::string text;
};
json_pattern json_read_pattern(const nlohmann::json &j, const json_where &w);

} // namespace llmc
