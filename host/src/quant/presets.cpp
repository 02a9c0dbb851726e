#include "quant/presets.h"

#include "util/error.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <utility>

namespace llmc::quant {

namespace {

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

// Static symmetric int weights, group 128: the weight side of every W{w}A* preset.
quant_args int_group128(int bits, bool symmetric = true) {
    quant_args a;
    a.num_bits = bits;
    a.type = quant_type::int_;
    a.strategy = quant_strategy::group;
    a.group_size = 128;
    a.symmetric = symmetric;
    return a;
}

quant_args token_dynamic(int bits, quant_type type) {
    quant_args a;
    a.num_bits = bits;
    a.type = type;
    a.strategy = quant_strategy::token;
    a.dynamic = dynamic_kind::dynamic;
    return a;
}

quant_args float_args(int bits, quant_strategy s) {
    quant_args a;
    a.num_bits = bits;
    a.type = quant_type::float_;
    a.strategy = s;
    return a;
}

quant_args nvfp4_args() {
    auto a = float_args(4, quant_strategy::tensor_group);
    a.group_size = 16;
    a.scale_dtype = dtype_id::float8_e4m3fn;
    a.zp_dtype = dtype_id::float8_e4m3fn;
    return a;
}

// MXFP4 / MXFP8: group 32 with E8M0 (uint8) scales.
quant_args mx_args(int bits) {
    auto a = float_args(bits, quant_strategy::group);
    a.group_size = 32;
    a.scale_dtype = dtype_id::uint8;
    a.zp_dtype = dtype_id::uint8;
    return a;
}

struct preset {
    std::string name;
    std::function<void(quant_scheme &)> fill;
};

const std::vector<preset> &table() {
    static const std::vector<preset> presets = [] {
        std::vector<preset> p;
        p.push_back({"UNQUANTIZED", [](quant_scheme &) {}});
        for (int w = 2; w <= 8; ++w)
            p.push_back({"W" + std::to_string(w) + "A16",
                         [w](quant_scheme &s) { s.weights = int_group128(w); }});
        p.push_back({"W4A16_ASYM", [](quant_scheme &s) { s.weights = int_group128(4, false); }});
        for (int w = 2; w <= 7; ++w)
            p.push_back({"W" + std::to_string(w) + "A8", [w](quant_scheme &s) {
                             s.weights = int_group128(w);
                             s.input_activations = token_dynamic(8, quant_type::int_);
                         }});
        auto w8a8 = [](quant_scheme &s) {
            quant_args w;
            w.num_bits = 8;
            w.strategy = quant_strategy::channel;
            s.weights = w;
            s.input_activations = token_dynamic(8, quant_type::int_);
        };
        p.push_back({"W8A8", w8a8});
        p.push_back({"INT8", w8a8});
        for (int w = 2; w <= 4; ++w)
            p.push_back({"W" + std::to_string(w) + "A4", [w](quant_scheme &s) {
                             s.weights = int_group128(w);
                             s.input_activations = token_dynamic(4, quant_type::int_);
                         }});
        p.push_back({"W4AFP8", [](quant_scheme &s) {
                         s.weights = int_group128(4);
                         s.input_activations = token_dynamic(8, quant_type::float_);
                     }});
        p.push_back({"FP8", [](quant_scheme &s) {
                         s.weights = float_args(8, quant_strategy::tensor);
                         auto in = float_args(8, quant_strategy::tensor);
                         in.observer = "static_minmax";
                         s.input_activations = in;
                     }});
        p.push_back({"FP8_DYNAMIC", [](quant_scheme &s) {
                         s.weights = float_args(8, quant_strategy::channel);
                         s.input_activations = token_dynamic(8, quant_type::float_);
                     }});
        p.push_back({"FP8_BLOCK", [](quant_scheme &s) {
                         auto w = float_args(8, quant_strategy::block);
                         w.block_structure = std::array<int, 2>{128, 128};
                         s.weights = w;
                         auto in = float_args(8, quant_strategy::group);
                         in.group_size = 128;
                         in.dynamic = dynamic_kind::dynamic;
                         s.input_activations = in;
                     }});
        p.push_back({"NVFP4A16", [](quant_scheme &s) { s.weights = nvfp4_args(); }});
        p.push_back({"NVFP4", [](quant_scheme &s) {
                         s.weights = nvfp4_args();
                         auto in = nvfp4_args();
                         in.dynamic = dynamic_kind::local;
                         in.observer = "static_minmax";
                         s.input_activations = in;
                     }});
        for (int bits : {4, 8}) {
            const std::string base = bits == 4 ? "MXFP4" : "MXFP8";
            p.push_back({base + "A16", [bits](quant_scheme &s) { s.weights = mx_args(bits); }});
            p.push_back({base, [bits](quant_scheme &s) {
                             s.weights = mx_args(bits);
                             auto in = mx_args(bits);
                             in.dynamic = dynamic_kind::dynamic;
                             s.input_activations = in;
                         }});
        }
        return p;
    }();
    return presets;
}

const preset *find(const std::string &name) {
    const auto u = upper(name);
    for (const auto &p : table())
        if (p.name == u) return &p;
    return nullptr;
}

} // namespace

quant_scheme preset_scheme(const std::string &name, const std::vector<std::string> &targets) {
    const preset *p = find(name);
    if (!p) {
        std::string names;
        for (const auto &n : preset_names()) names += (names.empty() ? "" : ", ") + n;
        fail("unknown preset scheme '{}'; valid names: {}", name, names);
    }
    quant_scheme s;
    s.targets = targets;
    p->fill(s);
    validate_scheme(s, "preset " + p->name);
    return s;
}

bool is_preset(const std::string &name) { return find(name) != nullptr; }

std::vector<std::string> preset_names() {
    std::vector<std::string> names;
    for (const auto &p : table()) names.push_back(p.name);
    return names;
}

} // namespace llmc::quant
