#include "quant/args.h"

#include "util/error.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

namespace llmc::quant {

namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

struct dtype_info {
    dtype_id id;
    const char *name;
    const char *alias; // torch attribute alias, or nullptr
    bool floating;
    double eps, lo, hi;
};

constexpr double f32_max = 3.4028234663852886e38;
constexpr double bf16_max = 3.3895313892515355e38;

const dtype_info dtype_table[] = {
    {dtype_id::float64, "float64", "double", true, 2.220446049250313e-16,
     -std::numeric_limits<double>::max(), std::numeric_limits<double>::max()},
    {dtype_id::float32, "float32", "float", true, 1.1920928955078125e-07, -f32_max, f32_max},
    {dtype_id::float16, "float16", "half", true, 0.0009765625, -65504.0, 65504.0},
    {dtype_id::bfloat16, "bfloat16", nullptr, true, 0.0078125, -bf16_max, bf16_max},
    {dtype_id::float8_e4m3fn, "float8_e4m3fn", nullptr, true, 0.125, -448.0, 448.0},
    {dtype_id::float8_e5m2, "float8_e5m2", nullptr, true, 0.25, -57344.0, 57344.0},
    {dtype_id::int64, "int64", "long", false, 1.0, -9223372036854775808.0, 9223372036854775807.0},
    {dtype_id::int32, "int32", "int", false, 1.0, -2147483648.0, 2147483647.0},
    {dtype_id::int16, "int16", "short", false, 1.0, -32768.0, 32767.0},
    {dtype_id::int8, "int8", nullptr, false, 1.0, -128.0, 127.0},
    {dtype_id::uint8, "uint8", nullptr, false, 1.0, 0.0, 255.0},
};

const dtype_info &info(dtype_id d) {
    for (const auto &i : dtype_table)
        if (i.id == d) return i;
    fail("internal: unknown dtype id {}", static_cast<int>(d));
}

// --- JSON field readers: each error names where.field ---

int read_int(const json &v, const std::string &field) {
    if (v.is_number_integer()) return v.get<int>();
    // pydantic's lax int accepts integral floats (4.0), nothing fractional.
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (std::floor(d) == d && std::abs(d) < 1e9) return static_cast<int>(d);
    }
    fail("{}: expected an integer, got {}", field, v.dump());
}

std::string read_string(const json &v, const std::string &field) {
    if (!v.is_string()) fail("{}: expected a string, got {}", field, v.dump());
    return v.get<std::string>();
}

quant_type parse_type(const std::string &s, const std::string &field) {
    auto l = lower(s);
    if (l == "int") return quant_type::int_;
    if (l == "float") return quant_type::float_;
    fail("{}: unknown quantization type '{}' (expected 'int' or 'float')", field, s);
}

quant_strategy parse_strategy(const std::string &s, const std::string &field) {
    static const std::pair<const char *, quant_strategy> names[] = {
        {"tensor", quant_strategy::tensor},     {"channel", quant_strategy::channel},
        {"group", quant_strategy::group},       {"block", quant_strategy::block},
        {"token", quant_strategy::token},       {"tensor_group", quant_strategy::tensor_group},
        {"attn_head", quant_strategy::attn_head}};
    auto l = lower(s);
    for (const auto &[n, v] : names)
        if (l == n) return v;
    fail("{}: unknown strategy '{}' (expected tensor, channel, group, block, token, tensor_group "
         "or attn_head)",
         field, s);
}

std::optional<actorder_kind> parse_actorder(const json &v, const std::string &field) {
    if (v.is_null()) return std::nullopt;
    // bool True means GROUP, False means none (ActivationOrdering validator).
    if (v.is_boolean()) return v.get<bool>() ? std::optional(actorder_kind::group) : std::nullopt;
    auto l = lower(read_string(v, field));
    if (l == "group") return actorder_kind::group;
    if (l == "weight") return actorder_kind::weight;
    if (l == "dynamic") return actorder_kind::dynamic;
    if (l == "static") return actorder_kind::static_;
    fail("{}: unknown actorder '{}' (expected group, weight, dynamic, static, true or false)",
         field, v.get<std::string>());
}

dynamic_kind parse_dynamic(const json &v, const std::string &field) {
    if (v.is_boolean()) return v.get<bool>() ? dynamic_kind::dynamic : dynamic_kind::static_;
    if (v.is_string() && lower(v.get<std::string>()) == "local") return dynamic_kind::local;
    fail("{}: expected true, false or \"local\", got {}", field, v.dump());
}

std::array<int, 2> parse_block(const json &v, const std::string &field) {
    auto bad = [&]() -> std::array<int, 2> {
        fail("{}: invalid block_structure {}; must be a list of two ints [rows, cols]", field,
             v.dump());
    };
    std::vector<int> vals;
    if (v.is_string()) {
        // Legacy "128x128" form.
        auto s = v.get<std::string>();
        size_t start = 0;
        while (true) {
            auto x = s.find('x', start);
            auto part = s.substr(start, x == std::string::npos ? std::string::npos : x - start);
            if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos)
                return bad();
            vals.push_back(std::stoi(part));
            if (x == std::string::npos) break;
            start = x + 1;
        }
    } else if (v.is_array()) {
        for (const auto &e : v) {
            if (!e.is_number_integer()) return bad();
            vals.push_back(e.get<int>());
        }
    } else {
        return bad();
    }
    if (vals.size() != 2) return bad();
    return {vals[0], vals[1]};
}

dtype_id parse_dtype(const json &v, const std::string &field) {
    auto s = read_string(v, field);
    auto d = dtype_from_string(s);
    if (!d) fail("{}: no such torch dtype '{}'", field, s);
    return *d;
}

bool is_group_like(quant_strategy s) {
    return s == quant_strategy::group || s == quant_strategy::tensor_group;
}

json opt_args_to_json(const std::optional<quant_args> &a) {
    return a ? args_to_json(*a) : json(nullptr);
}

} // namespace

std::string to_string(quant_type t) { return t == quant_type::int_ ? "int" : "float"; }

std::string to_string(quant_strategy s) {
    switch (s) {
    case quant_strategy::tensor: return "tensor";
    case quant_strategy::channel: return "channel";
    case quant_strategy::group: return "group";
    case quant_strategy::block: return "block";
    case quant_strategy::token: return "token";
    case quant_strategy::tensor_group: return "tensor_group";
    case quant_strategy::attn_head: return "attn_head";
    }
    return "?";
}

std::string to_string(actorder_kind a) {
    switch (a) {
    case actorder_kind::group: return "group";
    case actorder_kind::weight: return "weight";
    case actorder_kind::dynamic: return "dynamic";
    case actorder_kind::static_: return "static";
    }
    return "?";
}

std::string to_string(dynamic_kind d) {
    switch (d) {
    case dynamic_kind::static_: return "false";
    case dynamic_kind::dynamic: return "true";
    case dynamic_kind::local: return "local";
    }
    return "?";
}

std::string to_string(dtype_id d) { return std::string("torch.") + info(d).name; }

actorder_kind canonical(actorder_kind a) {
    if (a == actorder_kind::dynamic) return actorder_kind::group;
    if (a == actorder_kind::static_) return actorder_kind::weight;
    return a;
}

std::optional<dtype_id> dtype_from_string(const std::string &name) {
    std::string n = name.rfind("torch.", 0) == 0 ? name.substr(6) : name;
    for (const auto &i : dtype_table)
        if (n == i.name || (i.alias && n == i.alias)) return i.id;
    return std::nullopt;
}

bool is_floating(dtype_id d) { return info(d).floating; }
double dtype_eps(dtype_id d) { return info(d).eps; }
double dtype_min(dtype_id d) { return info(d).lo; }
double dtype_max(dtype_id d) { return info(d).hi; }

bool quant_args::operator==(const quant_args &o) const {
    return num_bits == o.num_bits && type == o.type && symmetric == o.symmetric &&
           group_size == o.group_size && strategy == o.strategy &&
           block_structure == o.block_structure && dynamic == o.dynamic &&
           actorder == o.actorder && scale_dtype == o.scale_dtype && zp_dtype == o.zp_dtype &&
           observer == o.observer && observer_kwargs == o.observer_kwargs;
}

void validate_args(quant_args &a, const std::string &where) {
    auto field = [&](const char *f) { return where + "." + f; };

    // Not checked by pydantic itself, but calculate_range / pytorch_dtype reject these later;
    // failing here names the field.
    if (a.num_bits < 1) fail("{}: num_bits must be positive, got {}", field("num_bits"), a.num_bits);
    if (a.type == quant_type::float_ && a.num_bits != 4 && a.num_bits != 8)
        fail("{}: float quantization supports 4 or 8 bits, got {}", field("num_bits"), a.num_bits);
    if (a.type == quant_type::int_ && a.num_bits > 32)
        fail("{}: int quantization supports at most 32 bits, got {}", field("num_bits"),
             a.num_bits);

    if (a.group_size && *a.group_size < -1)
        fail("{}: invalid group size {}; use group_size > 0 for strategy 'group' and "
             "group_size = -1 for 'channel'",
             field("group_size"), *a.group_size);

    if (!a.strategy) {
        if (!a.group_size) a.strategy = quant_strategy::tensor;
        else if (*a.group_size > 0) a.strategy = quant_strategy::group;
        else if (*a.group_size == -1) a.strategy = quant_strategy::channel;
        else
            fail("{}: invalid group size {}; use group_size > 0 for strategy 'group' and "
                 "group_size = -1 for 'channel'",
                 field("group_size"), *a.group_size);
    }
    const quant_strategy s = *a.strategy;

    if (s == quant_strategy::token && !a.is_dynamic())
        fail("{}: static token quantization is not possible, set dynamic: true",
             field("strategy"));

    if (is_group_like(s) && (!a.group_size || *a.group_size <= 0))
        fail("{}: strategy '{}' requires group_size to be set to a positive value",
             field("group_size"), to_string(s));
    if (a.group_size && *a.group_size > 0 && !is_group_like(s))
        fail("{}: group_size {} requires strategy 'group' or 'tensor_group', got '{}'",
             field("group_size"), *a.group_size, to_string(s));

    if (s == quant_strategy::block && !a.block_structure)
        fail("{}: strategy 'block' requires block_structure", field("block_structure"));
    if (a.block_structure && s != quant_strategy::block)
        fail("{}: block_structure requires strategy 'block', got '{}'", field("block_structure"),
             to_string(s));
    // Zero-sized blocks would divide by zero in the numerics.
    if (a.block_structure && ((*a.block_structure)[0] <= 0 || (*a.block_structure)[1] <= 0))
        fail("{}: block sizes must be positive, got [{}, {}]", field("block_structure"),
             (*a.block_structure)[0], (*a.block_structure)[1]);

    if (a.actorder && canonical(*a.actorder) == actorder_kind::group && !is_group_like(s))
        fail("{}: actorder '{}' requires strategy 'group' or 'tensor_group', got '{}'",
             field("actorder"), to_string(*a.actorder), to_string(s));

    if (a.is_dynamic()) {
        if (s != quant_strategy::token && s != quant_strategy::tensor &&
            s != quant_strategy::tensor_group && s != quant_strategy::group)
            fail("{}: dynamic quantization needs strategy token, tensor, tensor_group or group, "
                 "got '{}'",
                 field("dynamic"), to_string(s));
        if (a.dynamic == dynamic_kind::local && s != quant_strategy::tensor_group)
            fail("{}: dynamic 'local' is only supported for strategy 'tensor_group', got '{}'",
                 field("dynamic"), to_string(s));
        if (a.observer) {
            if (a.dynamic == dynamic_kind::dynamic) {
                if (*a.observer != "memoryless")
                    spdlog::warn("{}: no observer is used for dynamic quantization; observer "
                                 "'{}' set to null",
                                 field("observer"), *a.observer);
                a.observer.reset();
            }
        } else if (a.dynamic == dynamic_kind::local) {
            a.observer = "minmax";
        }
    } else if (!a.observer) {
        a.observer = "memoryless_minmax";
    }

    if (!a.zp_dtype) {
        if (a.type == quant_type::float_) a.zp_dtype = dtype_id::float8_e4m3fn; // fp8 and fp4
        else if (a.num_bits <= 8) a.zp_dtype = dtype_id::int8;
        else if (a.num_bits <= 16) a.zp_dtype = dtype_id::int16;
        else a.zp_dtype = dtype_id::int32;
    }
}

quant_args make_args(quant_args raw, const std::string &where) {
    validate_args(raw, where);
    return raw;
}

quant_args args_from_json(const json &j, const std::string &where) {
    if (!j.is_object()) fail("{}: expected a mapping of quantization args, got {}", where, j.dump());
    quant_args a;
    for (const auto &[key, v] : j.items()) {
        const std::string f = where + "." + key;
        if (key == "num_bits") a.num_bits = read_int(v, f);
        else if (key == "type") a.type = parse_type(read_string(v, f), f);
        else if (key == "symmetric") {
            if (!v.is_boolean()) fail("{}: expected true or false, got {}", f, v.dump());
            a.symmetric = v.get<bool>();
        } else if (key == "group_size") {
            if (v.is_null()) a.group_size.reset();
            else a.group_size = read_int(v, f);
        } else if (key == "strategy") {
            if (v.is_null()) a.strategy.reset();
            else a.strategy = parse_strategy(read_string(v, f), f);
        } else if (key == "block_structure") {
            if (v.is_null()) a.block_structure.reset();
            else a.block_structure = parse_block(v, f);
        } else if (key == "dynamic") a.dynamic = parse_dynamic(v, f);
        else if (key == "actorder") a.actorder = parse_actorder(v, f);
        else if (key == "scale_dtype") {
            if (v.is_null()) a.scale_dtype.reset();
            else a.scale_dtype = parse_dtype(v, f);
        } else if (key == "zp_dtype") {
            if (v.is_null()) a.zp_dtype.reset();
            else a.zp_dtype = parse_dtype(v, f);
        } else if (key == "observer") {
            if (v.is_null()) a.observer.reset();
            else a.observer = read_string(v, f);
        } else if (key == "observer_kwargs") {
            if (!v.is_object()) fail("{}: expected a mapping, got {}", f, v.dump());
            a.observer_kwargs = v;
        } else {
            fail("{}: unknown key '{}' in quantization args (allowed: actorder, block_structure, "
                 "dynamic, group_size, num_bits, observer, observer_kwargs, scale_dtype, "
                 "strategy, symmetric, type, zp_dtype)",
                 where, key);
        }
    }
    validate_args(a, where);
    return a;
}

json args_to_json(const quant_args &a) {
    json j = json::object();
    j["actorder"] = a.actorder ? json(to_string(*a.actorder)) : json(nullptr);
    j["block_structure"] = a.block_structure
                               ? json::array({(*a.block_structure)[0], (*a.block_structure)[1]})
                               : json(nullptr);
    if (a.dynamic == dynamic_kind::local) j["dynamic"] = "local";
    else j["dynamic"] = a.dynamic == dynamic_kind::dynamic;
    j["group_size"] = a.group_size ? json(*a.group_size) : json(nullptr);
    j["num_bits"] = a.num_bits;
    j["observer"] = a.observer ? json(*a.observer) : json(nullptr);
    j["observer_kwargs"] = a.observer_kwargs.is_object() ? a.observer_kwargs : json::object();
    j["scale_dtype"] = a.scale_dtype ? json(to_string(*a.scale_dtype)) : json(nullptr);
    j["strategy"] = a.strategy ? json(to_string(*a.strategy)) : json(nullptr);
    j["symmetric"] = a.symmetric;
    j["type"] = to_string(a.type);
    // compressed-tensors serializes zp_dtype as null when symmetric (vLLM loads no zero points).
    j["zp_dtype"] = (!a.symmetric && a.zp_dtype) ? json(to_string(*a.zp_dtype)) : json(nullptr);
    return j;
}

bool quant_scheme::operator==(const quant_scheme &o) const {
    return targets == o.targets && weights == o.weights &&
           input_activations == o.input_activations &&
           output_activations == o.output_activations && format == o.format;
}

const std::vector<std::string> &compression_formats() {
    static const std::vector<std::string> formats = {
        "dense",           "sparse-bitmask",  "sparse-24-bitmask",    "int-quantized",
        "float-quantized", "naive-quantized", "pack-quantized",       "marlin-24",
        "mixed-precision", "nvfp4-pack-quantized", "mxfp4-pack-quantized", "mxfp8-quantized"};
    return formats;
}

void validate_scheme(quant_scheme &s, const std::string &where) {
    // Idempotent, so schemes built in code and parsed ones go through the same checks.
    if (s.weights) validate_args(*s.weights, where + ".weights");
    if (s.input_activations) validate_args(*s.input_activations, where + ".input_activations");
    if (s.output_activations) validate_args(*s.output_activations, where + ".output_activations");
    if (s.input_activations) {
        const auto st = *s.input_activations->strategy;
        if (st != quant_strategy::token && st != quant_strategy::tensor &&
            st != quant_strategy::group && st != quant_strategy::tensor_group &&
            st != quant_strategy::attn_head)
            fail("{}.input_activations.strategy: strategy '{}' is not supported for activation "
                 "quantization (use token, tensor, group, tensor_group or attn_head)",
                 where, to_string(st));
        if (s.input_activations->actorder)
            fail("{}.input_activations.actorder: cannot apply actorder to input activations",
                 where);
    }
    if (s.output_activations && s.output_activations->actorder)
        fail("{}.output_activations.actorder: cannot apply actorder to output activations", where);
    if (s.format) {
        if (*s.format == "mixed-precision")
            fail("{}.format: 'mixed-precision' cannot be set as the format of a scheme", where);
        const auto &all = compression_formats();
        if (std::find(all.begin(), all.end(), *s.format) == all.end()) {
            std::string names;
            for (const auto &f : all)
                if (f != "mixed-precision") names += (names.empty() ? "" : ", ") + f;
            fail("{}.format: unknown compression format '{}' (expected one of: {})", where,
                 *s.format, names);
        }
    }
    if (s.weights && s.input_activations &&
        s.weights->strategy == quant_strategy::group &&
        s.input_activations->strategy == quant_strategy::group &&
        s.weights->group_size != s.input_activations->group_size)
        spdlog::warn("{}: GROUP strategy for weights and input_activations with different group "
                     "sizes ({} vs {}) may complicate fused kernels",
                     where, s.weights->group_size.value_or(0),
                     s.input_activations->group_size.value_or(0));
}

quant_scheme scheme_from_json(const json &j, const std::string &where) {
    if (!j.is_object()) fail("{}: expected a mapping for a quantization scheme, got {}", where, j.dump());
    quant_scheme s;
    bool has_targets = false;
    for (const auto &[key, v] : j.items()) {
        const std::string f = where + "." + key;
        if (key == "targets") {
            if (!v.is_array()) fail("{}: expected a list of strings, got {}", f, v.dump());
            for (const auto &t : v) s.targets.push_back(read_string(t, f));
            has_targets = true;
        } else if (key == "weights" || key == "input_activations" ||
                   key == "output_activations") {
            std::optional<quant_args> a;
            if (!v.is_null()) a = args_from_json(v, f);
            if (key == "weights") s.weights = a;
            else if (key == "input_activations") s.input_activations = a;
            else s.output_activations = a;
        } else if (key == "format") {
            if (v.is_null()) s.format.reset();
            else s.format = read_string(v, f);
        } else {
            fail("{}: unknown key '{}' in quantization scheme (allowed: format, "
                 "input_activations, output_activations, targets, weights)",
                 where, key);
        }
    }
    if (!has_targets) fail("{}.targets: required field is missing", where);
    validate_scheme(s, where);
    return s;
}

json scheme_to_json(const quant_scheme &s) {
    json j = json::object();
    j["format"] = s.format ? json(*s.format) : json(nullptr);
    j["input_activations"] = opt_args_to_json(s.input_activations);
    j["output_activations"] = opt_args_to_json(s.output_activations);
    j["targets"] = s.targets;
    j["weights"] = opt_args_to_json(s.weights);
    return j;
}

} // namespace llmc::quant
