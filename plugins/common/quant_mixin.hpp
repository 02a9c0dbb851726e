// llm-compressor's QuantizationMixin for llmc plugins (header only, shared by the
// QuantizationModifier and GPTQModifier plugins): the recipe fields, their validation, the
// resolution of `scheme` / `config_groups` into config groups (with the mixin's observer
// overrides), the matching of modules to groups, and requires_calibration_data.
// No numerics here: schemes are canonicalized by the host's scheme_resolve.
#pragma once

#include <llmc/sdk/modifier.hpp>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace llmc_plugin_common {

using llmc::sdk::json;
using llmc::sdk::status_error;

inline status_error invalid_arg(const std::string &msg) { return status_error(LLMC_ERR_INVALID_ARG, msg); }

// One entry of the resolved config_groups: the canonical scheme JSON (every default filled).
struct config_group {
    std::string name;
    json scheme;
};

// The observer compressed-tensors fills in when args name none (static / dynamic / local).
inline json default_observer(const json &args) {
    const json &d = args.value("dynamic", json(false));
    if (d == json(true)) return nullptr;
    if (d == json("local")) return "minmax";
    return "memoryless_minmax";
}

inline bool is_dynamic_true(const json &args) {
    return args.is_object() && args.value("dynamic", json(false)) == json(true);
}
inline bool is_dynamic_local(const json &args) {
    return args.is_object() && args.value("dynamic", json(false)) == json("local");
}
inline bool present(const json &scheme, const char *key) { return scheme.contains(key) && scheme[key].is_object(); }

class quantization_mixin {
  public:
    // ---- the recipe fields (QuantizationMixin, llm-compressor section 3.1)
    json config_groups = nullptr;
    std::vector<std::string> targets{"Linear"};
    std::vector<std::string> ignore;
    json scheme = nullptr;
    json kv_cache_scheme = nullptr;
    std::optional<std::string> weight_observer, input_observer, output_observer;
    json observer = nullptr;
    bool bypass_divisibility_checks = false;

    // GPTQ adjusts each group's weight args after the observer overrides (actorder).
    std::function<void(const std::string &group, json &weights)> adjust_weights;

    void declare(llmc::sdk::param_set &p) {
        p.add("config_groups", config_groups, "mapping of group name to a QuantizationScheme (or preset: [targets])");
        p.add("targets", targets, "module classes or names (re: patterns) the scheme applies to");
        p.add("ignore", ignore, "modules never quantized (names, classes or re: patterns)");
        p.add("scheme", scheme, "preset name, mapping of preset to targets, or a scheme mapping without targets");
        p.add("kv_cache_scheme", kv_cache_scheme, "QuantizationArgs of the attention key/value cache");
        p.add("weight_observer", weight_observer, "observer of the weights (overrides the scheme's)");
        p.add("input_observer", input_observer, "observer of static input activations");
        p.add("output_observer", output_observer, "observer of static output activations");
        p.add("observer", observer, "mapping weights/input/output -> observer name").check([](const json &v) {
            if (v.is_null()) return;
            if (!v.is_object()) throw std::invalid_argument("`observer` must be a dictionary");
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (it.key() != "weights" && it.key() != "input" && it.key() != "output")
                    throw std::invalid_argument("invalid observer key '" + it.key() +
                                                "'; valid keys are weights, input, output");
                if (!it.value().is_string())
                    throw std::invalid_argument("observer value for '" + it.key() + "' must be a string");
            }
        });
        p.add("bypass_divisibility_checks", bypass_divisibility_checks,
              "allow weight columns not divisible by group_size");
    }

    // QuantizationMixin.has_config: anything beyond the defaults was given.
    bool has_config() const {
        return !(config_groups.is_null() && targets == std::vector<std::string>{"Linear"} && ignore.empty() &&
                 scheme.is_null() && kv_cache_scheme.is_null());
    }

    // resolve_quantization_config: fills groups() and kv_args(). Throws INVALID_ARG naming the
    // field. The host is only used for scheme_resolve (thread-safe, stateless).
    void resolve(const llmc::sdk::host_ref &h) {
        groups_.clear();
        if (!scheme.is_null() && !config_groups.is_null())
            throw invalid_arg("Please specify either `scheme` or `config_groups`");
        const bool individual = weight_observer || input_observer || output_observer;
        if (individual && !observer.is_null())
            throw invalid_arg("Cannot specify both individual observer parameters (weight_observer, input_observer, "
                              "output_observer) and observer dict. Please use either individual parameters or the "
                              "observer dict.");
        if (!scheme.is_null()) resolve_scheme_field(h);
        else if (!config_groups.is_null()) resolve_config_groups(h);
        if (groups_.empty()) {
            // QuantizationScheme(targets=targets): a group that quantizes nothing by itself.
            json raw = {{"targets", targets}};
            add_group(h, "group_0", raw, canonical(h, raw.dump(), "targets"), false);
        }
        kv_args_ = nullptr;
        if (!kv_cache_scheme.is_null()) {
            if (!kv_cache_scheme.is_object()) throw invalid_arg("field 'kv_cache_scheme': expected a mapping");
            json s = canonical(h, json{{"targets", {"Linear"}}, {"input_activations", kv_cache_scheme}}.dump(),
                               "kv_cache_scheme");
            kv_args_ = s["input_activations"];
        }
    }

    // _set_requires_calibration_data: kv cache, static or local inputs, static outputs, imatrix.
    bool requires_calibration_data() const {
        if (!kv_args_.is_null()) return true;
        for (const auto &g : groups_) {
            const json &s = g.scheme;
            if (present(s, "weights") && s["weights"].value("observer", json()) == json("imatrix_mse")) return true;
            if (present(s, "input_activations") && !is_dynamic_true(s["input_activations"])) return true;
            if (present(s, "output_activations") && s["output_activations"].value("dynamic", json(false)) == json(false))
                return true;
        }
        return false;
    }

    // Matches modules to groups as compressed-tensors' apply_quantization_config does: a module
    // takes the scheme of its best target (an exact name beats a regex, a regex beats a class
    // name; ties go to the target listed first, and a target listed in several groups belongs to
    // the last one). Only Linear modules can be quantized by this host.
    void match(const llmc::sdk::host_ref &h) {
        std::vector<std::string> order;
        std::map<std::string, size_t> group_of_target;
        for (size_t gi = 0; gi < groups_.size(); ++gi)
            for (const auto &t : groups_[gi].scheme.value("targets", json::array())) {
                const std::string ts = t.get<std::string>();
                if (!group_of_target.count(ts)) order.push_back(ts);
                group_of_target[ts] = gi;
            }
        std::map<std::string, std::pair<int, size_t>> best;
        for (size_t pos = 0; pos < order.size(); ++pos) {
            const std::string &t = order[pos];
            for (const auto &m : h.match({t}, ignore)) {
                const int prio = t == m ? 0 : t.rfind("re:", 0) == 0 ? 1 : 2;
                auto it = best.find(m);
                if (it == best.end() || std::make_pair(prio, pos) < it->second) best[m] = {prio, pos};
            }
        }
        modules_.clear();
        schemes_.clear();
        std::vector<std::string> skipped;
        for (const auto &m : order.empty() ? std::vector<std::string>{} : h.match(order, ignore)) {
            if (h.module(m).class_name != "Linear") {
                skipped.push_back(m);
                continue;
            }
            const size_t gi = group_of_target.at(order[best.at(m).second]);
            modules_.push_back(m);
            schemes_[m] = groups_[gi].scheme;
        }
        if (!skipped.empty())
            h.warn("only Linear modules are quantized; matched but skipped: " + join(skipped, 8));
        attention_.clear();
        if (!kv_args_.is_null()) find_attention(h);
    }

    // Records each module's scheme with the host (the exporter writes what is attached). As
    // compressed-tensors does, the kv cache scheme is an attention module's scheme whose input
    // activations are the kv args (the host's forward ignores it; the exporter saves it as
    // kv_cache_scheme).
    void attach(const llmc::sdk::host_ref &h) const {
        for (const auto &m : modules_) h.scheme_attach(m, schemes_.at(m).dump());
        for (const auto &a : attention_)
            h.scheme_attach(a, json{{"targets", {h.module(a).class_name}}, {"input_activations", kv_args_}}.dump());
    }
    // Without a config of its own a modifier uses the schemes attached before it (GPTQ).
    void adopt_attached(const llmc::sdk::host_ref &h) {
        modules_.clear();
        schemes_.clear();
        for (const auto &m : h.match(targets, ignore)) {
            const std::string s = h.scheme_get(m);
            if (s.empty()) continue;
            modules_.push_back(m);
            schemes_[m] = json::parse(s);
        }
    }

    // validate_group_size_divisibility for the given (module, columns) pairs: every offender is
    // listed in one error, as llm-compressor does.
    void check_divisible(const std::vector<std::pair<std::string, int64_t>> &columns) const {
        if (bypass_divisibility_checks) return;
        std::string lines;
        for (const auto &[m, cols] : columns) {
            const json *s = scheme_of(m);
            if (s == nullptr || !present(*s, "weights")) continue;
            const json &w = (*s)["weights"];
            const std::string strategy = w.value("strategy", "");
            if (strategy != "group" && strategy != "tensor_group") continue;
            const int64_t gs = w.value("group_size", 0);
            if (gs > 0 && cols >= gs && cols % gs != 0)
                lines += "\n  - " + m + " (columns=" + std::to_string(cols) + ", group_size=" + std::to_string(gs) + ")";
        }
        if (!lines.empty())
            throw invalid_arg("The following layers have weight column counts not divisible by group_size. Group and "
                              "tensor-group quantization require columns % group_size == 0. Add these layer names to "
                              "the modifier's `ignore` list and re-run, or set bypass_divisibility_checks=True if your "
                              "runtime supports non-divisible dimensions:" +
                              lines);
    }

    const std::vector<config_group> &groups() const { return groups_; }
    const json &kv_args() const { return kv_args_; }
    // Targeted Linear modules with their scheme, in model order.
    const std::vector<std::string> &modules() const { return modules_; }
    const json *scheme_of(const std::string &m) const {
        auto it = schemes_.find(m);
        return it == schemes_.end() ? nullptr : &it->second;
    }
    // Attention modules whose key/value cache kv_cache_scheme calibrates.
    const std::vector<std::string> &attention_modules() const { return attention_; }

    static std::string join(const std::vector<std::string> &v, size_t max) {
        std::string s;
        for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
        if (v.size() > max) s += ", ... (" + std::to_string(v.size()) + " in all)";
        return s;
    }

  private:
    static json canonical(const llmc::sdk::host_ref &h, const std::string &text, const std::string &field) {
        try {
            return json::parse(h.scheme_resolve(text));
        } catch (const status_error &e) {
            throw invalid_arg("field '" + field + "': " + e.what());
        }
    }

    static bool scheme_key(const std::string &k) {
        return k == "weights" || k == "input_activations" || k == "output_activations" || k == "format" ||
               k == "targets";
    }

    static json target_list(const json &v, const std::string &field) {
        if (v.is_string()) return json::array({v});
        if (v.is_array()) {
            for (const auto &e : v)
                if (!e.is_string()) throw invalid_arg("field '" + field + "': targets must be strings");
            return v;
        }
        throw invalid_arg("field '" + field + "': expected a target or a list of targets");
    }

    // A preset with its targets; its args name an observer explicitly only where the preset
    // does (FP8 and NVFP4 inputs), which shows as one that differs from the default.
    void add_preset(const llmc::sdk::host_ref &h, const std::string &name, const std::string &preset,
                    const json &tgts, const std::string &field) {
        json s = canonical(h, json(preset).dump(), field);
        s["targets"] = tgts;
        json explicit_keys = json::object();
        for (const char *k : {"weights", "input_activations", "output_activations"})
            if (present(s, k) && s[k]["observer"] != default_observer(s[k])) explicit_keys[k] = s[k]["observer"];
        add_group(h, name, json{{"explicit", explicit_keys}}, s, true);
    }

    void resolve_scheme_field(const llmc::sdk::host_ref &h) {
        if (scheme.is_string()) {
            add_preset(h, "group_0", scheme.get<std::string>(), json(targets), "scheme");
            return;
        }
        if (!scheme.is_object() || scheme.empty())
            throw invalid_arg("field 'scheme': `scheme` must either be a preset scheme name or a dictionary of preset "
                              "scheme names");
        bool full = false;
        for (auto it = scheme.begin(); it != scheme.end(); ++it) full = full || scheme_key(it.key());
        if (full) {
            // A whole scheme without targets: the modifier's targets apply.
            json raw = scheme;
            if (!raw.contains("targets")) raw["targets"] = targets;
            add_group(h, "group_0", raw, canonical(h, raw.dump(), "scheme"), false);
            return;
        }
        size_t idx = 0;
        for (auto it = scheme.begin(); it != scheme.end(); ++it, ++idx)
            add_preset(h, "group_" + std::to_string(idx), it.key(), target_list(it.value(), "scheme." + it.key()),
                       "scheme." + it.key());
    }

    void resolve_config_groups(const llmc::sdk::host_ref &h) {
        if (!config_groups.is_object()) throw invalid_arg("field 'config_groups': expected a mapping of groups");
        for (auto it = config_groups.begin(); it != config_groups.end(); ++it) {
            const std::string field = "config_groups." + it.key();
            if (it.value().is_string() || it.value().is_array()) { // {W4A16: [Linear]}
                add_preset(h, it.key(), it.key(), target_list(it.value(), field), field);
                continue;
            }
            if (!it.value().is_object()) throw invalid_arg("field '" + field + "': expected a QuantizationScheme mapping");
            if (!it.value().contains("targets")) throw invalid_arg("field '" + field + ".targets': required");
            add_group(h, it.key(), it.value(), canonical(h, it.value().dump(), field), false);
        }
    }

    // _apply_observer_overrides: the modifier's observers win; otherwise an observer the scheme
    // named stays, and the rest get the mixin's defaults (weights memoryless_minmax, activations
    // minmax, none for dynamic ones).
    void add_group(const llmc::sdk::host_ref &h, const std::string &name, const json &raw, json s, bool preset) {
        std::optional<std::string> w = weight_observer, in = input_observer, out = output_observer;
        if (observer.is_object()) {
            if (observer.contains("weights")) w = observer["weights"].get<std::string>();
            if (observer.contains("input")) in = observer["input"].get<std::string>();
            if (observer.contains("output")) out = observer["output"].get<std::string>();
        }
        const struct {
            const char *key;
            std::optional<std::string> value;
            const char *fallback;
        } updates[] = {{"weights", w, "memoryless_minmax"}, {"input_activations", in, "minmax"},
                       {"output_activations", out, "minmax"}};
        for (const auto &u : updates) {
            if (!present(s, u.key)) continue;
            json &args = s[u.key];
            if (u.value) {
                args["observer"] = *u.value;
                continue;
            }
            const bool named = preset ? raw["explicit"].contains(u.key)
                                      : present(raw, u.key) && raw[u.key].contains("observer") &&
                                            !raw[u.key]["observer"].is_null();
            if (named) continue;
            args["observer"] = is_dynamic_true(args) ? json(nullptr) : json(u.fallback);
        }
        if (adjust_weights && present(s, "weights")) adjust_weights(name, s["weights"]);
        // Validate what the overrides produced (an observer override may not fit the args).
        s = canonical(h, s.dump(), preset ? "scheme" : name);
        groups_.push_back({name, s});
    }

    void find_attention(const llmc::sdk::host_ref &h) {
        const size_t n = h.module_count();
        std::set<std::string> names;
        for (size_t i = 0; i < n; ++i) names.insert(h.module(i).name);
        for (size_t i = 0; i < n; ++i) {
            const auto info = h.module(i);
            if (info.class_name.find("Attention") == std::string::npos) continue;
            if (!names.count(info.name + ".k_proj") || !names.count(info.name + ".v_proj")) continue;
            if (!ignore.empty() && h.match({info.name}, ignore).empty()) continue;
            attention_.push_back(info.name);
        }
        if (attention_.empty())
            throw invalid_arg("kv_cache_scheme: no attention module with k_proj and v_proj was found");
    }

    std::vector<config_group> groups_;
    json kv_args_ = nullptr;
    std::vector<std::string> modules_;
    std::map<std::string, json> schemes_;
    std::vector<std::string> attention_;
};

} // namespace llmc_plugin_common
