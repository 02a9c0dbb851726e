#include "recipe/yaml_json.h"

#include "util/error.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <vector>

namespace llmc {

using nlohmann::ordered_json;

namespace {

const char *const yaml_tag_prefix = "tag:yaml.org,2002:";

bool one_of(const std::string &s, std::initializer_list<const char *> options) {
    for (const char *o : options)
        if (s == o)
            return true;
    return false;
}

// Digits of `body` in `base`, with PyYAML's `_` separators allowed after the first digit.
std::optional<std::string> clean_digits(const std::string &body, int base) {
    if (body.empty() || body[0] == '_')
        return std::nullopt;
    std::string out;
    for (char c : body) {
        if (c == '_')
            continue;
        int d = -1;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        if (d < 0 || d >= base)
            return std::nullopt;
        out += c;
    }
    if (out.empty())
        return std::nullopt;
    return out;
}

// PyYAML's (YAML 1.1) ints: decimal, 0x hex, 0b binary, 0-prefixed octal, plus YAML 1.2's 0o.
std::optional<ordered_json> resolve_int(const std::string &s) {
    size_t i = 0;
    bool negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    if (i >= s.size())
        return std::nullopt;
    std::string rest = s.substr(i);
    int base = 10;
    std::optional<std::string> digits;
    if (rest.size() > 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'b' || rest[1] == 'o')) {
        base = rest[1] == 'x' ? 16 : rest[1] == 'b' ? 2 : 8;
        digits = clean_digits(rest.substr(2), base);
    } else if (rest == "0") {
        digits = rest;
    } else if (rest.size() > 1 && rest[0] == '0') {
        base = 8;
        digits = clean_digits(rest.substr(1), 8);
    } else if (rest[0] >= '1' && rest[0] <= '9') {
        digits = clean_digits(rest, 10);
    }
    if (!digits)
        return std::nullopt;

    uint64_t value = 0;
    bool overflow = false;
    for (char c : *digits) {
        uint64_t d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
        if (value > (std::numeric_limits<uint64_t>::max() - d) / base) {
            overflow = true;
            break;
        }
        value = value * base + d;
    }
    if (!overflow) {
        if (!negative && value <= uint64_t(std::numeric_limits<int64_t>::max()))
            return ordered_json(int64_t(value));
        if (!negative)
            return ordered_json(value);
        if (value <= uint64_t(std::numeric_limits<int64_t>::max()) + 1)
            return ordered_json(int64_t(0 - value));
    }
    // Beyond 64 bits: JSON can only hold it as a float.
    double d = 0;
    for (char c : *digits)
        d = d * base + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    return ordered_json(negative ? -d : d);
}

// Floats: PyYAML's forms (1.5, 1., .5, 1.0e-5, .inf, .nan) and, unlike PyYAML, also 1e-5,
// which pydantic would have turned into a float anyway.
std::optional<ordered_json> resolve_float(const std::string &s) {
    size_t i = 0;
    bool negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    std::string rest = s.substr(i);
    if (one_of(rest, {".inf", ".Inf", ".INF"}))
        return ordered_json(negative ? -std::numeric_limits<double>::infinity()
                                     : std::numeric_limits<double>::infinity());
    if (i == 0 && one_of(rest, {".nan", ".NaN", ".NAN"}))
        return ordered_json(std::numeric_limits<double>::quiet_NaN());

    std::string clean = negative ? "-" : "";
    size_t mantissa_digits = 0;
    bool dot = false, exponent = false;
    size_t j = 0;
    for (; j < rest.size(); ++j) {
        char c = rest[j];
        if (c >= '0' && c <= '9') {
            ++mantissa_digits;
            clean += c;
        } else if (c == '_' && mantissa_digits > 0) {
            continue;
        } else if (c == '.' && !dot) {
            dot = true;
            clean += c;
        } else {
            break;
        }
    }
    if (mantissa_digits == 0)
        return std::nullopt;
    if (j < rest.size() && (rest[j] == 'e' || rest[j] == 'E')) {
        exponent = true;
        clean += 'e';
        ++j;
        if (j < rest.size() && (rest[j] == '+' || rest[j] == '-'))
            clean += rest[j++];
        size_t exp_digits = 0;
        for (; j < rest.size() && rest[j] >= '0' && rest[j] <= '9'; ++j, ++exp_digits)
            clean += rest[j];
        if (exp_digits == 0)
            return std::nullopt;
    }
    if (j != rest.size() || (!dot && !exponent))
        return std::nullopt;
    double value = 0;
    auto [end, ec] = std::from_chars(clean.data(), clean.data() + clean.size(), value);
    if (end != clean.data() + clean.size())
        return std::nullopt;
    if (ec == std::errc::result_out_of_range) // overflow: inf, as Python's float() gives
        value = std::strtod(clean.c_str(), nullptr);
    return ordered_json(value);
}

[[noreturn]] void fail_at(const std::string &source, const YAML::Node &n, const std::string &what) {
    fail("{}: {}", yaml_location(source, n.Mark()), what);
}

ordered_json convert(const YAML::Node &n, const std::string &source);

ordered_json convert_scalar(const YAML::Node &n, const std::string &source) {
    const std::string &tag = n.Tag();
    const std::string &text = n.Scalar();
    if (tag == "!" || tag == std::string(yaml_tag_prefix) + "str")
        return text;
    if (tag.empty() || tag == "?")
        return yaml_resolve_plain(text);
    if (tag.rfind(yaml_tag_prefix, 0) == 0) {
        std::string kind = tag.substr(std::string(yaml_tag_prefix).size());
        if (kind == "null")
            return nullptr;
        ordered_json v = yaml_resolve_plain(text);
        if (kind == "bool" && v.is_boolean())
            return v;
        if (kind == "int" && v.is_number_integer())
            return v;
        if (kind == "float" && v.is_number())
            return v.get<double>();
        if (kind == "bool" || kind == "int" || kind == "float")
            fail_at(source, n, fmt::format("'{}' is not a valid !!{}", text, kind));
    }
    fail_at(source, n, fmt::format("unsupported YAML tag '{}' (recipes are read like PyYAML's safe_load)", tag));
}

void check_collection_tag(const YAML::Node &n, const std::string &source, const char *kind) {
    const std::string &tag = n.Tag();
    if (tag.empty() || tag == "?" || tag == "!" || tag == std::string(yaml_tag_prefix) + kind)
        return;
    fail_at(source, n, fmt::format("unsupported YAML tag '{}' (recipes are read like PyYAML's safe_load)", tag));
}

// Mappings keep their key order; `<<` merges come first and are overridden by the mapping's own
// keys, as PyYAML builds them (of several merged mappings, the earlier one wins).
ordered_json convert_map(const YAML::Node &n, const std::string &source) {
    check_collection_tag(n, source, "map");
    std::vector<std::pair<std::string, ordered_json>> merged;
    ordered_json own = ordered_json::object();
    for (const auto &kv : n) {
        const YAML::Node &key = kv.first;
        if (!key.IsScalar())
            fail_at(source, key, "mapping keys must be plain scalars");
        const std::string &name = key.Scalar();
        if (name == "<<" && (key.Tag() == "?" || key.Tag().empty())) {
            const YAML::Node &v = kv.second;
            std::vector<YAML::Node> sources;
            if (v.IsMap()) {
                sources.push_back(v);
            } else if (v.IsSequence()) {
                for (auto it = v.begin(); it != v.end(); ++it)
                    sources.insert(sources.begin(), *it);
            } else {
                fail_at(source, key, "merge key '<<' needs a mapping or a list of mappings");
            }
            for (const YAML::Node &m : sources) {
                if (!m.IsMap())
                    fail_at(source, m, "merge key '<<' needs a mapping or a list of mappings");
                ordered_json converted = convert_map(m, source);
                for (auto &item : converted.items())
                    merged.emplace_back(item.key(), item.value());
            }
            continue;
        }
        if (own.contains(name))
            fail_at(source, key, fmt::format("duplicate key '{}'", name));
        own[name] = convert(kv.second, source);
    }
    if (merged.empty())
        return own;
    ordered_json out = ordered_json::object();
    for (auto &[k, v] : merged)
        out[k] = std::move(v);
    for (auto &item : own.items())
        out[item.key()] = item.value();
    return out;
}

ordered_json convert(const YAML::Node &n, const std::string &source) {
    switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
        // `!!str` with no text is the empty string, as in PyYAML.
        if (n.Tag() == std::string(yaml_tag_prefix) + "str" || n.Tag() == "!")
            return "";
        return nullptr;
    case YAML::NodeType::Scalar:
        return convert_scalar(n, source);
    case YAML::NodeType::Sequence: {
        check_collection_tag(n, source, "seq");
        ordered_json out = ordered_json::array();
        for (const auto &child : n)
            out.push_back(convert(child, source));
        return out;
    }
    case YAML::NodeType::Map:
        return convert_map(n, source);
    }
    return nullptr;
}

bool is_scalar(const ordered_json &j) { return !j.is_object() && !j.is_array(); }

// Written on one line: scalars, empty collections, lists of scalars (PyYAML's choice too).
bool is_inline(const ordered_json &j) {
    if (is_scalar(j) || j.empty())
        return true;
    if (!j.is_array())
        return false;
    for (const auto &e : j)
        if (!is_scalar(e))
            return false;
    return true;
}

// Shortest text that reads back as the same double, always with a '.' and a signed exponent
// so that PyYAML also reads it as a float.
std::string float_text(double d) {
    if (std::isnan(d))
        return ".nan";
    if (std::isinf(d))
        return d > 0 ? ".inf" : "-.inf";
    std::string s = nlohmann::json(d).dump();
    size_t e = s.find_first_of("eE");
    std::string mantissa = s.substr(0, e);
    std::string exponent = e == std::string::npos ? "" : s.substr(e + 1);
    if (mantissa.find('.') == std::string::npos)
        mantissa += ".0";
    if (exponent.empty())
        return mantissa;
    if (exponent[0] != '+' && exponent[0] != '-')
        exponent = "+" + exponent;
    return mantissa + "e" + exponent;
}

// A plain scalar is kept only when it certainly reads back as this same string, in yaml-cpp and
// in PyYAML; anything doubtful is quoted.
bool plain_ok(const std::string &s, bool flow) {
    if (s.empty() || !yaml_resolve_plain(s).is_string())
        return false;
    if (s.front() == ' ' || s.back() == ' ' || s == "<<" || s == "=" || s.rfind("...", 0) == 0)
        return false;
    // Number-like text ("2:4" is a sexagesimal int and 2024-01-01 a date to PyYAML): quote it.
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (digit(s[0]) || (s.size() > 1 && std::string("+-.").find(s[0]) != std::string::npos &&
                        (digit(s[1]) || s[1] == '.')))
        return false;
    if (std::string("-?:,[]{}#&*!|>'\"%@`").find(s.front()) != std::string::npos)
        return false;
    if (s.back() == ':' || s.find(": ") != std::string::npos || s.find(" #") != std::string::npos)
        return false;
    if (flow && s.find_first_of(",[]{}:#") != std::string::npos)
        return false;
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f)
            return false;
    return true;
}

std::string quote(const std::string &s) {
    bool needs_escapes = false;
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f)
            needs_escapes = true;
    if (!needs_escapes) {
        std::string out = "'";
        for (char c : s)
            out += c == '\'' ? std::string("''") : std::string(1, c);
        return out + "'";
    }
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '\r': out += "\\r"; break;
        default:
            if (c < 0x20 || c == 0x7f)
                out += fmt::format("\\x{:02x}", c);
            else
                out += char(c);
        }
    }
    return out + "\"";
}

std::string string_text(const std::string &s, bool flow) { return plain_ok(s, flow) ? s : quote(s); }

std::string scalar_text(const ordered_json &j, bool flow) {
    switch (j.type()) {
    case ordered_json::value_t::null: return "null";
    case ordered_json::value_t::boolean: return j.get<bool>() ? "true" : "false";
    case ordered_json::value_t::number_integer: return std::to_string(j.get<int64_t>());
    case ordered_json::value_t::number_unsigned: return std::to_string(j.get<uint64_t>());
    case ordered_json::value_t::number_float: return float_text(j.get<double>());
    case ordered_json::value_t::string: return string_text(j.get_ref<const std::string &>(), flow);
    default: return quote(j.dump()); // binary/discarded: never produced by yaml_to_json
    }
}

std::string inline_text(const ordered_json &j) {
    if (is_scalar(j))
        return scalar_text(j, false);
    if (j.empty())
        return j.is_array() ? "[]" : "{}";
    std::string out = "[";
    for (size_t i = 0; i < j.size(); ++i)
        out += (i ? ", " : "") + scalar_text(j[i], true);
    return out + "]";
}

// Writes a block collection at `indent`; with `continues_line` the first entry goes right
// after a "- " already written.
void emit_block(std::string &out, const ordered_json &j, int indent, bool continues_line) {
    bool first = true;
    auto start_line = [&] {
        if (!(first && continues_line))
            out.append(indent, ' ');
        first = false;
    };
    if (j.is_object()) {
        for (const auto &item : j.items()) {
            start_line();
            out += string_text(item.key(), false) + ":";
            const ordered_json &v = item.value();
            if (is_inline(v)) {
                out += " " + inline_text(v) + "\n";
            } else if (v.is_object()) {
                out += "\n";
                emit_block(out, v, indent + 2, false);
            } else {
                out += "\n"; // block list under a key: not indented, as PyYAML writes it
                emit_block(out, v, indent, false);
            }
        }
        return;
    }
    for (const auto &e : j) {
        start_line();
        out += "- ";
        if (is_inline(e))
            out += inline_text(e) + "\n";
        else
            emit_block(out, e, indent + 2, true);
    }
}

} // namespace

std::string yaml_location(const std::string &source, const YAML::Mark &mark) {
    if (mark.is_null() || mark.line < 0)
        return source.empty() ? "<yaml>" : source;
    if (source.empty())
        return fmt::format("line {}, column {}", mark.line + 1, mark.column + 1);
    return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

ordered_json yaml_resolve_plain(const std::string &text) {
    if (one_of(text, {"", "~", "null", "Null", "NULL"}))
        return nullptr;
    // PyYAML (YAML 1.1) booleans, so that recipes mean what they meant under llm-compressor.
    if (one_of(text, {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}))
        return true;
    if (one_of(text, {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}))
        return false;
    if (!text.empty() && std::string("+-.0123456789").find(text[0]) != std::string::npos) {
        if (auto v = resolve_int(text))
            return *v;
        if (auto v = resolve_float(text))
            return *v;
    }
    return text;
}

ordered_json yaml_to_json(const YAML::Node &n, const std::string &source) { return convert(n, source); }

YAML::Node json_to_yaml(const ordered_json &j) {
    switch (j.type()) {
    case ordered_json::value_t::null:
        return YAML::Node(YAML::NodeType::Null);
    case ordered_json::value_t::string: {
        YAML::Node n(j.get<std::string>());
        n.SetTag("!");
        return n;
    }
    case ordered_json::value_t::array: {
        YAML::Node n(YAML::NodeType::Sequence);
        for (const auto &e : j)
            n.push_back(json_to_yaml(e));
        n.SetStyle(is_inline(j) ? YAML::EmitterStyle::Flow : YAML::EmitterStyle::Block);
        return n;
    }
    case ordered_json::value_t::object: {
        YAML::Node n(YAML::NodeType::Map);
        for (const auto &item : j.items()) {
            YAML::Node key(item.key());
            key.SetTag("!"); // a key "<<" is text here, not a merge
            n.force_insert(key, json_to_yaml(item.value()));
        }
        return n;
    }
    default:
        return YAML::Node(scalar_text(j, false));
    }
}

std::string yaml_dump(const ordered_json &j) {
    if (is_inline(j))
        return inline_text(j) + "\n";
    std::string out;
    emit_block(out, j, 0, false);
    return out;
}

} // namespace llmc
