// Declarative parameters: a modifier binds its fields to names with defaults and checks, and the
// SDK turns that into the descriptor's params_json and validates the recipe's fields against it
// (unknown keys are rejected naming the key, like pydantic's extra="forbid").
#pragma once

#include <llmc/sdk/errors.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace llmc::sdk {

using json = nlohmann::json;

namespace detail {

inline std::string type_of(const json &v) {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "bool";
    if (v.is_number_integer() || v.is_number_unsigned()) return "int";
    if (v.is_number()) return "float";
    if (v.is_string()) return "string";
    if (v.is_array()) return "list";
    return "mapping";
}

[[noreturn]] inline void invalid(const std::string &name, const std::string &why) {
    throw status_error(LLMC_ERR_INVALID_ARG, "field '" + name + "': " + why);
}

// Conversion of one JSON value to a bound C++ type, with the type name the schema publishes.
template <class T> struct binder;

template <> struct binder<bool> {
    static const char *type() { return "bool"; }
    static bool from(const std::string &n, const json &v) {
        if (!v.is_boolean()) invalid(n, "expected bool, got " + type_of(v));
        return v.get<bool>();
    }
    static json to(bool v) { return v; }
};
template <> struct binder<int64_t> {
    static const char *type() { return "int"; }
    static int64_t from(const std::string &n, const json &v) {
        if (!v.is_number_integer() && !v.is_number_unsigned()) invalid(n, "expected int, got " + type_of(v));
        return v.get<int64_t>();
    }
    static json to(int64_t v) { return v; }
};
template <> struct binder<double> {
    static const char *type() { return "float"; }
    static double from(const std::string &n, const json &v) {
        if (!v.is_number()) invalid(n, "expected float, got " + type_of(v));
        return v.get<double>();
    }
    static json to(double v) { return v; }
};
template <> struct binder<std::string> {
    static const char *type() { return "string"; }
    static std::string from(const std::string &n, const json &v) {
        if (!v.is_string()) invalid(n, "expected string, got " + type_of(v));
        return v.get<std::string>();
    }
    static json to(const std::string &v) { return v; }
};
// A string or a list of strings, as llm-compressor's `targets: str | list[str]`.
template <> struct binder<std::vector<std::string>> {
    static const char *type() { return "string_list"; }
    static std::vector<std::string> from(const std::string &n, const json &v) {
        if (v.is_string()) return {v.get<std::string>()};
        if (!v.is_array()) invalid(n, "expected a string or a list of strings, got " + type_of(v));
        std::vector<std::string> out;
        for (const auto &e : v) {
            if (!e.is_string()) invalid(n, "expected a list of strings, found an element of type " + type_of(e));
            out.push_back(e.get<std::string>());
        }
        return out;
    }
    static json to(const std::vector<std::string> &v) { return v; }
};
template <> struct binder<std::vector<double>> {
    static const char *type() { return "float_list"; }
    static std::vector<double> from(const std::string &n, const json &v) {
        if (v.is_number()) return {v.get<double>()};
        if (!v.is_array()) invalid(n, "expected a number or a list of numbers, got " + type_of(v));
        std::vector<double> out;
        for (const auto &e : v) {
            if (!e.is_number()) invalid(n, "expected a list of numbers, found an element of type " + type_of(e));
            out.push_back(e.get<double>());
        }
        return out;
    }
    static json to(const std::vector<double> &v) { return v; }
};
template <> struct binder<json> {
    static const char *type() { return "any"; }
    static json from(const std::string &, const json &v) { return v; }
    static json to(const json &v) { return v; }
};
// Optional fields accept null (and their default is usually null).
template <class T> struct binder<std::optional<T>> {
    static const char *type() { return binder<T>::type(); }
    static std::optional<T> from(const std::string &n, const json &v) {
        if (v.is_null()) return std::nullopt;
        return binder<T>::from(n, v);
    }
    static json to(const std::optional<T> &v) { return v ? binder<T>::to(*v) : json(nullptr); }
};

} // namespace detail

// One declared parameter. Checks are chained: p.add("sparsity", sparsity).range(0, 1).
class param {
  public:
    param(std::string name, const char *type, json def, std::function<void(const json &)> assign)
        : name_(std::move(name)), type_(type), default_(std::move(def)), assign_(std::move(assign)) {}

    param &describe(std::string d) { description_ = std::move(d); return *this; }
    param &required() { required_ = true; return *this; }
    param &nullable() { nullable_ = true; return *this; }
    param &choices(std::vector<json> c) { choices_ = std::move(c); return *this; }
    param &minimum(double v) { minimum_ = v; return *this; }
    param &maximum(double v) { maximum_ = v; return *this; }
    param &exclusive_minimum(double v) { exclusive_minimum_ = v; return *this; }
    param &range(double lo, double hi) { minimum_ = lo; maximum_ = hi; return *this; }
    // Extra validation after assignment (throw status_error or std::invalid_argument).
    param &check(std::function<void(const json &)> fn) { checks_.push_back(std::move(fn)); return *this; }

    const std::string &name() const { return name_; }
    bool is_required() const { return required_; }

    json schema() const {
        json j = {{"name", name_}, {"type", type_}, {"default", default_}, {"required", required_}};
        j["description"] = description_;
        if (!choices_.empty()) j["choices"] = choices_;
        if (minimum_) j["minimum"] = *minimum_;
        if (maximum_) j["maximum"] = *maximum_;
        if (exclusive_minimum_) j["exclusive_minimum"] = *exclusive_minimum_;
        if (nullable_) j["nullable"] = true;
        return j;
    }

    void apply(const json &v) const {
        if (v.is_null() && (nullable_ || default_.is_null())) {
            assign_(v);
            return;
        }
        if (!choices_.empty()) {
            bool ok = false;
            for (const auto &c : choices_) ok = ok || c == v;
            if (!ok) detail::invalid(name_, v.dump() + " is not one of " + json(choices_).dump());
        }
        if (v.is_number()) {
            double x = v.get<double>();
            if (minimum_ && x < *minimum_) detail::invalid(name_, v.dump() + " is below the minimum " + json(*minimum_).dump());
            if (maximum_ && x > *maximum_) detail::invalid(name_, v.dump() + " is above the maximum " + json(*maximum_).dump());
            if (exclusive_minimum_ && x <= *exclusive_minimum_)
                detail::invalid(name_, v.dump() + " must be greater than " + json(*exclusive_minimum_).dump());
        }
        assign_(v);
        for (const auto &c : checks_) {
            try {
                c(v);
            } catch (const status_error &) {
                throw;
            } catch (const std::exception &e) {
                detail::invalid(name_, e.what());
            }
        }
    }

  private:
    std::string name_;
    const char *type_;
    json default_;
    std::function<void(const json &)> assign_;
    std::string description_;
    bool required_ = false;
    bool nullable_ = false;
    std::vector<json> choices_;
    std::optional<double> minimum_, maximum_, exclusive_minimum_;
    std::vector<std::function<void(const json &)>> checks_;
};

// The set of a modifier's parameters, bound to its fields.
class param_set {
  public:
    // Binds `field`; its current value is the default. Supported field types: bool, int64_t,
    // double, std::string, std::vector<std::string>, std::vector<double>, json, std::optional<...>.
    template <class T> param &add(const std::string &name, T &field, const std::string &description = "") {
        for (const auto &p : params_)
            if (p.name() == name) throw status_error(LLMC_ERR_INTERNAL, "parameter '" + name + "' declared twice");
        params_.emplace_back(name, detail::binder<T>::type(), detail::binder<T>::to(field),
                             [name, &field](const json &v) { field = detail::binder<T>::from(name, v); });
        return params_.back().describe(description);
    }

    json schema() const {
        json arr = json::array();
        for (const auto &p : params_) arr.push_back(p.schema());
        return arr;
    }

    // Applies the recipe's fields (a JSON object). Unknown keys and missing required ones fail.
    void apply(const json &fields) const {
        if (!fields.is_null() && !fields.is_object())
            throw status_error(LLMC_ERR_INVALID_ARG, "parameters must be a mapping, got " + detail::type_of(fields));
        if (fields.is_object()) {
            for (auto it = fields.begin(); it != fields.end(); ++it) {
                const param *p = find(it.key());
                if (p == nullptr) {
                    std::string known;
                    for (const auto &q : params_) known += (known.empty() ? "" : ", ") + q.name();
                    throw status_error(LLMC_ERR_INVALID_ARG,
                                       "field '" + it.key() + "': unknown field (known: " + known + ")");
                }
                p->apply(it.value());
            }
        }
        for (const auto &p : params_)
            if (p.is_required() && (!fields.is_object() || !fields.contains(p.name())))
                throw status_error(LLMC_ERR_INVALID_ARG, "field '" + p.name() + "': required but missing");
    }

  private:
    const param *find(const std::string &name) const {
        for (const auto &p : params_)
            if (p.name() == name) return &p;
        return nullptr;
    }
    std::vector<param> params_;
};

} // namespace llmc::sdk
