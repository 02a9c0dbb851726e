#include "model/config.h"

#include "util/error.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace llmc {

namespace {

constexpr double pi = 3.141592653589793; // Python's math.pi

struct family_entry {
    const char *architecture;
    const char *model_type;
    const char *prefix;
    model_family family;
};

const family_entry families[] = {
    {"LlamaForCausalLM", "llama", "Llama", model_family::llama},
    {"MistralForCausalLM", "mistral", "Mistral", model_family::mistral},
    {"Qwen2ForCausalLM", "qwen2", "Qwen2", model_family::qwen2},
    {"Qwen3ForCausalLM", "qwen3", "Qwen3", model_family::qwen3},
};

std::string supported_list() {
    std::string s;
    for (const auto &f : families)
        s += (s.empty() ? "" : ", ") + std::string(f.architecture);
    return s;
}

// Typed field access that names the file and key on a type mismatch.
template <class T> T get_or(const nlohmann::json &j, const char *key, T def, const std::string &where) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
        return def;
    try {
        if constexpr (std::is_same_v<T, int64_t>) {
            if (!it->is_number_integer())
                throw std::invalid_argument("not an integer");
        } else if constexpr (std::is_same_v<T, double>) {
            if (!it->is_number())
                throw std::invalid_argument("not a number");
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!it->is_boolean())
                throw std::invalid_argument("not a boolean");
        } else {
            if (!it->is_string())
                throw std::invalid_argument("not a string");
        }
        return it->get<T>();
    } catch (const std::exception &e) {
        fail("{}: \"{}\" is {}, got {}", where, key, e.what(), it->dump());
    }
}

int64_t get_required(const nlohmann::json &j, const char *key, const std::string &where) {
    if (!j.contains(key) || j[key].is_null())
        fail("{}: missing required key \"{}\"", where, key);
    int64_t v = get_or<int64_t>(j, key, 0, where);
    if (v <= 0)
        fail("{}: \"{}\" must be positive, got {}", where, key, v);
    return v;
}

// transformers' config classes: LlamaConfig uses the head count, MistralConfig 8,
// Qwen2Config/Qwen3Config 32.
int64_t default_kv_heads(model_family f, int64_t heads) {
    switch (f) {
    case model_family::mistral:
        return 8;
    case model_family::qwen2:
    case model_family::qwen3:
        return 32;
    default:
        return heads;
    }
}

} // namespace

const std::vector<std::string> &supported_architectures() {
    static const std::vector<std::string> list = [] {
        std::vector<std::string> v;
        for (const auto &f : families)
            v.push_back(f.architecture);
        return v;
    }();
    return list;
}

model_config model_config::from_json(const nlohmann::json &j, const std::string &where) {
    if (!j.is_object())
        fail("{}: not a JSON object", where);
    model_config c;
    c.raw = j;
    c.model_type = get_or<std::string>(j, "model_type", "", where);

    // The architecture picks the family; without "architectures", model_type does.
    const family_entry *fam = nullptr;
    if (j.contains("architectures") && !j["architectures"].is_null()) {
        if (!j["architectures"].is_array() || j["architectures"].empty())
            fail("{}: \"architectures\" must be a non-empty list", where);
        for (const auto &a : j["architectures"]) {
            if (!a.is_string())
                fail("{}: \"architectures\" holds a non-string {}", where, a.dump());
            c.architectures.push_back(a.get<std::string>());
        }
        for (const auto &f : families)
            if (c.architectures[0] == f.architecture)
                fam = &f;
        if (!fam)
            fail("{}: architecture '{}' is not supported (supported: {})", where, c.architectures[0],
                 supported_list());
    } else {
        for (const auto &f : families)
            if (c.model_type == f.model_type)
                fam = &f;
        if (!fam)
            fail("{}: no \"architectures\" and model_type '{}' is not supported (supported: {})", where,
                 c.model_type, supported_list());
    }
    c.architecture = fam->architecture;
    c.family = fam->family;
    if (c.model_type.empty())
        c.model_type = fam->model_type;

    c.hidden_size = get_required(j, "hidden_size", where);
    c.intermediate_size = get_required(j, "intermediate_size", where);
    c.num_hidden_layers = get_required(j, "num_hidden_layers", where);
    c.num_attention_heads = get_required(j, "num_attention_heads", where);
    c.vocab_size = get_required(j, "vocab_size", where);
    const int64_t default_kv = default_kv_heads(c.family, c.num_attention_heads);
    c.num_key_value_heads = get_or<int64_t>(j, "num_key_value_heads", default_kv, where);
    if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
        fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where, c.num_attention_heads,
             c.num_key_value_heads);
    // Qwen3Config defaults head_dim to 128; the others derive it.
    const int64_t default_head_dim =
        c.family == model_family::qwen3 ? 128 : c.hidden_size / c.num_attention_heads;
    c.head_dim = get_or<int64_t>(j, "head_dim", default_head_dim, where);
    if (c.head_dim <= 0 || c.head_dim % 2 != 0)
        fail("{}: head_dim must be positive and even, got {}", where, c.head_dim);
    if (!j.contains("head_dim") && c.family != model_family::qwen3 && c.hidden_size % c.num_attention_heads != 0)
        fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", where, c.hidden_size,
             c.num_attention_heads);

    int64_t default_max_pos = 2048;
    if (c.family == model_family::mistral)
        default_max_pos = 4096 * 32;
    else if (c.family == model_family::qwen2 || c.family == model_family::qwen3)
        default_max_pos = 32768;
    c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", default_max_pos, where);
    c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, where);
    c.rope_theta = get_or<double>(j, "rope_theta", 10000.0, where);
    c.initializer_range = get_or<double>(j, "initializer_range", 0.02, where);
    c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, where);
    c.attention_bias = get_or<bool>(j, "attention_bias", false, where);
    c.mlp_bias = get_or<bool>(j, "mlp_bias", false, where);
    c.hidden_act = get_or<std::string>(j, "hidden_act", "silu", where);
    if (c.hidden_act != "silu" && c.hidden_act != "swish")
        fail("{}: hidden_act '{}' is not supported (the Llama family uses silu)", where, c.hidden_act);
    c.torch_dtype = get_or<std::string>(j, "torch_dtype", get_or<std::string>(j, "dtype", "", where), where);

    switch (c.family) {
    case model_family::llama:
        c.qkv_bias = c.o_bias = c.attention_bias;
        break;
    case model_family::mistral:
        c.mlp_bias = false;
        break;
    case model_family::qwen2:
        c.qkv_bias = true;
        c.mlp_bias = false;
        break;
    case model_family::qwen3:
        c.qkv_bias = c.o_bias = c.attention_bias;
        c.qk_norm = true;
        c.mlp_bias = false;
        break;
    }

    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
        const auto &rs = j["rope_scaling"];
        if (!rs.is_object())
            fail("{}: \"rope_scaling\" must be an object or null", where);
        const std::string w = where + " rope_scaling";
        std::string type = get_or<std::string>(rs, "rope_type", get_or<std::string>(rs, "type", "", w), w);
        if (type == "linear" || type == "llama3") {
            rope_scaling_config r;
            r.type = type;
            if (!rs.contains("factor"))
                fail("{}: \"factor\" is required for rope type {}", w, type);
            r.factor = get_or<double>(rs, "factor", 1.0, w);
            if (!(r.factor >= 1.0))
                fail("{}: \"factor\" must be >= 1, got {}", w, r.factor);
            if (type == "llama3") {
                for (const char *k : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
                    if (!rs.contains(k))
                        fail("{}: \"{}\" is required for rope type llama3", w, k);
                r.low_freq_factor = get_or<double>(rs, "low_freq_factor", 1.0, w);
                r.high_freq_factor = get_or<double>(rs, "high_freq_factor", 4.0, w);
                r.original_max_position_embeddings =
                    get_or<int64_t>(rs, "original_max_position_embeddings", 8192, w);
                if (!(r.high_freq_factor > r.low_freq_factor) || r.low_freq_factor <= 0 ||
                    r.original_max_position_embeddings <= 0)
                    fail("{}: needs 0 < low_freq_factor < high_freq_factor and a positive "
                         "original_max_position_embeddings",
                         w);
            }
            c.rope_scaling = r;
        } else if (type != "default") {
            fail("{}: rope type '{}' is not supported (supported: default, linear, llama3)", w, type);
        }
    }

    // Sliding windows: Mistral on every layer when set (MistralConfig defaults it to 4096);
    // Qwen2/Qwen3 from layer_types, or use_sliding_window from max_window_layers on.
    c.layer_sliding_window.assign(c.num_hidden_layers, 0);
    if (c.family == model_family::mistral) {
        int64_t sw = get_or<int64_t>(j, "sliding_window", j.contains("sliding_window") ? 0 : 4096, where);
        c.layer_sliding_window.assign(c.num_hidden_layers, sw);
    } else if (c.family == model_family::qwen2 || c.family == model_family::qwen3) {
        const int64_t sw = get_or<int64_t>(j, "sliding_window", 4096, where);
        if (j.contains("layer_types") && j["layer_types"].is_array()) {
            const auto &lt = j["layer_types"];
            if (static_cast<int64_t>(lt.size()) != c.num_hidden_layers)
                fail("{}: \"layer_types\" has {} entries for {} layers", where, lt.size(), c.num_hidden_layers);
            for (int64_t i = 0; i < c.num_hidden_layers; ++i)
                if (lt[i] == "sliding_attention")
                    c.layer_sliding_window[i] = sw;
        } else if (get_or<bool>(j, "use_sliding_window", false, where) && j.value("sliding_window", nlohmann::json(4096)).is_number()) {
            const int64_t from = get_or<int64_t>(j, "max_window_layers", 28, where);
            for (int64_t i = from; i < c.num_hidden_layers; ++i)
                c.layer_sliding_window[i] = sw;
        }
    }
    for (int64_t sw : c.layer_sliding_window)
        if (sw < 0)
            fail("{}: sliding_window must not be negative", where);
    return c;
}

model_config model_config::load(const std::string &path) {
    fs::path p(path);
    std::error_code ec;
    if (fs::is_directory(p, ec))
        p /= "config.json";
    std::ifstream in(p, std::ios::binary);
    if (!in)
        fail("{}: cannot open", p.string());
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception &e) {
        fail("{}: not valid JSON: {}", p.string(), e.what());
    }
    return from_json(j, p.string());
}

std::string model_config::class_prefix() const {
    for (const auto &f : families)
        if (f.family == family)
            return f.prefix;
    return "Llama";
}

nlohmann::json model_config::to_json() const {
    nlohmann::json j = raw.is_object() ? raw : nlohmann::json::object();
    // Write a field when the file had it or when it no longer equals what parsing would default to.
    auto put = [&](const char *key, const nlohmann::json &v, const nlohmann::json &def) {
        if (j.contains(key) || v != def)
            j[key] = v;
    };
    if (!j.contains("architectures") || architectures.empty() || architectures[0] != architecture)
        j["architectures"] = {architecture};
    j["model_type"] = model_type;
    j["hidden_size"] = hidden_size;
    j["intermediate_size"] = intermediate_size;
    j["num_hidden_layers"] = num_hidden_layers;
    j["num_attention_heads"] = num_attention_heads;
    j["vocab_size"] = vocab_size;
    put("num_key_value_heads", num_key_value_heads, default_kv_heads(family, num_attention_heads));
    put("head_dim", head_dim, family == model_family::qwen3 ? 128 : hidden_size / num_attention_heads);
    j["max_position_embeddings"] = max_position_embeddings;
    j["rms_norm_eps"] = rms_norm_eps;
    j["rope_theta"] = rope_theta;
    put("hidden_act", hidden_act, "silu");
    put("initializer_range", initializer_range, 0.02);
    j["tie_word_embeddings"] = tie_word_embeddings;
    put("attention_bias", attention_bias, false);
    put("mlp_bias", mlp_bias, false);
    if (rope_scaling) {
        nlohmann::json rs = j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"]
                                                                                         : nlohmann::json::object();
        rs["rope_type"] = rope_scaling->type;
        if (rs.contains("type"))
            rs["type"] = rope_scaling->type;
        rs["factor"] = rope_scaling->factor;
        if (rope_scaling->type == "llama3") {
            rs["low_freq_factor"] = rope_scaling->low_freq_factor;
            rs["high_freq_factor"] = rope_scaling->high_freq_factor;
            rs["original_max_position_embeddings"] = rope_scaling->original_max_position_embeddings;
        }
        j["rope_scaling"] = rs;
    } else if (j.contains("rope_scaling")) {
        j["rope_scaling"] = nullptr;
    }
    if (!torch_dtype.empty()) {
        if (j.contains("dtype") && !j.contains("torch_dtype"))
            j["dtype"] = torch_dtype;
        else
            j["torch_dtype"] = torch_dtype;
    }
    return j;
}

at::Tensor rope_inv_freq(const model_config &cfg) {
    // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), all in float32.
    const double dim = static_cast<double>(cfg.head_dim);
    at::Tensor exponent = at::arange(0, cfg.head_dim, 2, at::kLong).to(at::kFloat) / dim;
    at::Tensor inv_freq = at::reciprocal(at::pow(cfg.rope_theta, exponent));
    if (!cfg.rope_scaling)
        return inv_freq;
    const auto &rs = *cfg.rope_scaling;
    if (rs.type == "linear")
        return inv_freq / rs.factor;
    // llama3 (_compute_llama3_parameters), op for op so float32 rounding matches.
    const double old_context_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_freq_wavelen = old_context_len / rs.low_freq_factor;
    const double high_freq_wavelen = old_context_len / rs.high_freq_factor;
    at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * pi);
    at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
    at::Tensor smooth_factor =
        (at::reciprocal(wavelen) * old_context_len - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth_factor) * inv_freq_llama / rs.factor + smooth_factor * inv_freq_llama;
    at::Tensor is_medium = at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
    return at::where(is_medium, smoothed, inv_freq_llama);
}

std::string torch_dtype_name(at::ScalarType t) {
    switch (t) {
    case at::kFloat:
        return "float32";
    case at::kBFloat16:
        return "bfloat16";
    case at::kHalf:
        return "float16";
    case at::kDouble:
        return "float64";
    default:
        fail("no torch_dtype name for {}", c10::toString(t));
    }
}

} // namespace llmc
