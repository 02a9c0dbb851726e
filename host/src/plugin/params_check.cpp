#include "plugin/params_check.h"

#include <fmt/format.h>

namespace llmc {

using json = nlohmann::json;

bool params_is_common_field(const std::string &n) {
    return n == "index" || n == "group" || n == "start" || n == "end" || n == "update" ||
           n == "requires_calibration_data";
}

static const json *find_param(const json &schema, const std::string &name) {
    for (const auto &p : schema)
        if (p.value("name", "") == name) return &p;
    return nullptr;
}

static std::string type_problem(const std::string &type, const json &v) {
    auto all = [&](auto pred) {
        for (const auto &e : v)
            if (!pred(e)) return false;
        return true;
    };
    if (type == "bool" && !v.is_boolean()) return "expected bool";
    if (type == "int" && !v.is_number_integer()) return "expected int";
    if (type == "float" && !v.is_number()) return "expected float";
    if (type == "string" && !v.is_string()) return "expected string";
    if (type == "string_list" && !v.is_string() && !(v.is_array() && all([](const json &e) { return e.is_string(); })))
        return "expected a string or a list of strings";
    if (type == "float_list" && !v.is_number() && !(v.is_array() && all([](const json &e) { return e.is_number(); })))
        return "expected a number or a list of numbers";
    return "";
}

std::string params_check(const json &schema, const json &fields) {
    if (!fields.is_null() && !fields.is_object()) return "fields must be a mapping";
    if (fields.is_object()) {
        for (auto it = fields.begin(); it != fields.end(); ++it) {
            const std::string &k = it.key();
            const json &v = it.value();
            const json *p = find_param(schema, k);
            if (p == nullptr) {
                if (params_is_common_field(k)) continue;
                std::string known;
                for (const auto &q : schema) known += (known.empty() ? "" : ", ") + q.value("name", "");
                return fmt::format("field '{}': unknown field (known: {})", k, known);
            }
            if (v.is_null() && (p->value("default", json()).is_null() || p->value("nullable", false))) continue;
            std::string why = type_problem(p->value("type", "any"), v);
            if (!why.empty()) return fmt::format("field '{}': {}, got {}", k, why, v.dump());
            if (p->contains("choices")) {
                bool ok = false;
                for (const auto &c : (*p)["choices"]) ok = ok || c == v;
                if (!ok) return fmt::format("field '{}': {} is not one of {}", k, v.dump(), (*p)["choices"].dump());
            }
            if (v.is_number()) {
                double x = v.get<double>();
                if (p->contains("minimum") && x < (*p)["minimum"].get<double>())
                    return fmt::format("field '{}': {} is below the minimum {}", k, v.dump(), (*p)["minimum"].dump());
                if (p->contains("maximum") && x > (*p)["maximum"].get<double>())
                    return fmt::format("field '{}': {} is above the maximum {}", k, v.dump(), (*p)["maximum"].dump());
                if (p->contains("exclusive_minimum") && x <= (*p)["exclusive_minimum"].get<double>())
                    return fmt::format("field '{}': {} must be greater than {}", k, v.dump(),
                                       (*p)["exclusive_minimum"].dump());
            }
        }
    }
    for (const auto &p : schema)
        if (p.value("required", false) && !(fields.is_object() && fields.contains(p.value("name", ""))))
            return fmt::format("field '{}': required but missing", p.value("name", ""));
    return "";
}

nlohmann::ordered_json params_with_defaults(const json &schema, const nlohmann::ordered_json &fields) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (const auto &p : schema) {
        const std::string n = p.value("name", "");
        if (params_is_common_field(n)) continue;
        if (fields.is_object() && fields.contains(n))
            out[n] = fields[n];
        else if (p.contains("default"))
            out[n] = nlohmann::ordered_json::parse(p["default"].dump());
    }
    if (fields.is_object())
        for (auto it = fields.begin(); it != fields.end(); ++it)
            if (!out.contains(it.key())) out[it.key()] = it.value();
    return out;
}

} // namespace llmc
