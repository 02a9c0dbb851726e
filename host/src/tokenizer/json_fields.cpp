#include "tokenizer/json_fields.h"

#include "util/error.h"

namespace llmc {

void json_fail(const json_where &w, const std::string &what) { fail("{}: {}", w.label(), what); }

void json_unsupported(const json_where &w, const std::string &kind, const std::string &type) {
    json_fail(w, "unsupported " + kind + " type '" + type + "'");
}

std::string json_type(const nlohmann::json &j, const json_where &w) {
    if (!j.is_object()) json_fail(w, "expected an object");
    return json_require_string(j, "type", w);
}

const nlohmann::json &json_require(const nlohmann::json &j, const char *key, const json_where &w) {
    if (!j.is_object()) json_fail(w, "expected an object");
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) json_fail(w / key, "missing");
    return *it;
}

std::string json_require_string(const nlohmann::json &j, const char *key, const json_where &w) {
    const nlohmann::json &v = json_require(j, key, w);
    if (!v.is_string()) json_fail(w / key, "expected a string");
    return v.get<std::string>();
}

const nlohmann::json &json_require_array(const nlohmann::json &j, const char *key, const json_where &w) {
    const nlohmann::json &v = json_require(j, key, w);
    if (!v.is_array()) json_fail(w / key, "expected an array");
    return v;
}

namespace {
const nlohmann::json *optional_field(const nlohmann::json &j, const char *key, const json_where &w) {
    if (!j.is_object()) json_fail(w, "expected an object");
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}
} // namespace

bool json_bool(const nlohmann::json &j, const char *key, const json_where &w, bool dflt) {
    const nlohmann::json *v = optional_field(j, key, w);
    if (v == nullptr) return dflt;
    if (!v->is_boolean()) json_fail(w / key, "expected true or false");
    return v->get<bool>();
}

std::string json_string(const nlohmann::json &j, const char *key, const json_where &w, const std::string &dflt) {
    const nlohmann::json *v = optional_field(j, key, w);
    if (v == nullptr) return dflt;
    if (!v->is_string()) json_fail(w / key, "expected a string");
    return v->get<std::string>();
}

int64_t json_int(const nlohmann::json &j, const char *key, const json_where &w, int64_t dflt) {
    const nlohmann::json *v = optional_field(j, key, w);
    if (v == nullptr) return dflt;
    if (!v->is_number_integer()) json_fail(w / key, "expected an integer");
    return v->get<int64_t>();
}

json_pattern json_read_pattern(const nlohmann::json &j, const json_where &w) {
    const nlohmann::json &p = json_require(j, "pattern", w);
    const json_where pw = w / "pattern";
    if (p.is_object() && p.size() == 1) {
        if (p.contains("String") && p["String"].is_string()) return {false, p["String"].get<std::string>()};
        if (p.contains("Regex") && p["Regex"].is_string()) return {true, p["Regex"].get<std::string>()};
    }
    json_fail(pw, "expected {\"String\": ...} or {\"Regex\": ...}");
}

} // namespace llmc
