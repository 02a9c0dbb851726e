#include "checks.h"

#include "model/causal_lm.h"
#include "plugin/host_sink.h"
#include "plugin/plugin_library.h"
#include "session/pipeline.h"
#include "session/session.h"

#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <regex>
#include <set>

namespace llmc::kit {

namespace {

using json = nlohmann::json;

check_result ok(std::string d = "") { return {check_status::success, std::move(d)}; }
check_result bad(std::string d) { return {check_status::failed, std::move(d)}; }
check_result warn(std::string d) { return {check_status::warning, std::move(d)}; }

// A small random Llama: enough modules and layers for every lifecycle path, built in milliseconds.
std::unique_ptr<causal_lm> tiny_model() {
    json cfg = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_size", 32},
                {"intermediate_size", 64},
                {"num_hidden_layers", 2},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"vocab_size", 64},
                {"max_position_embeddings", 64},
                {"rms_norm_eps", 1e-5},
                {"tie_word_embeddings", false}};
    return causal_lm::random(model_config::from_json(cfg, "conformance model"), 1);
}

std::vector<at::Tensor> tiny_batches() {
    std::vector<at::Tensor> b;
    for (int i = 0; i < 2; ++i) b.push_back(at::randint(0, 64, {1, 8}, at::kLong));
    return b;
}

// The plugin loaded and one instance created through a real session on the tiny model.
struct fixture {
    std::shared_ptr<plugin_library> lib;
    std::unique_ptr<causal_lm> model;
    std::unique_ptr<session> s;
    modifier_instance *inst = nullptr;

    explicit fixture(const kit_options &o) {
        lib = plugin_library::load(o.plugin);
        model = tiny_model();
        s = std::make_unique<session>(*model);
        inst = &s->add_modifier(lib, json::parse(o.params), "conformance");
    }
};

llmc_event_t event_of(uint32_t type) { return event_make(type); }

check_result load_rtld_now_local(const kit_options &o) {
    void *h = dlopen(o.plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return bad(std::string("dlopen(RTLD_NOW | RTLD_LOCAL) failed: ") + dlerror());
    return ok();
}

check_result entry_symbol(const kit_options &o) {
    void *h = dlopen(o.plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return bad(std::string("cannot load: ") + dlerror());
    if (dlsym(h, LLMC_PLUGIN_ENTRY_SYMBOL) == nullptr) return bad("no exported symbol 'llmc_plugin_entry'");
    auto entry = reinterpret_cast<llmc_plugin_entry_fn>(dlsym(h, LLMC_PLUGIN_ENTRY_SYMBOL));
    const llmc_modifier_descriptor_t *a = entry(), *b = entry();
    if (a == nullptr) return bad("llmc_plugin_entry returned NULL");
    if (a != b) return bad("llmc_plugin_entry returned different pointers on two calls");
    return ok();
}

check_result exports_only_entry(const kit_options &o) {
    const std::string cmd = "nm -D --defined-only '" + o.plugin + "' 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    if (p == nullptr) return {check_status::skipped, "cannot run nm"};
    char line[1024];
    std::vector<std::string> extra;
    bool entry = false, ran = false;
    while (std::fgets(line, sizeof line, p) != nullptr) {
        ran = true;
        std::string l(line);
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
        auto sp = l.find_last_of(' ');
        if (sp == std::string::npos) continue;
        const std::string type = l.substr(0, sp).substr(l.substr(0, sp).find_last_of(' ') + 1);
        std::string sym = l.substr(sp + 1);
        auto at = sym.find('@');
        if (at != std::string::npos) sym = sym.substr(0, at);
        if (type == "A" || sym.empty()) continue; // version nodes
        if (sym == "llmc_plugin_entry") entry = true;
        else extra.push_back(sym);
    }
    int rc = pclose(p);
    if (!ran || rc != 0) return {check_status::skipped, "nm is not available (binutils)"};
    if (!entry) return bad("llmc_plugin_entry is not in the dynamic symbol table");
    if (!extra.empty()) {
        std::string s;
        for (size_t i = 0; i < extra.size() && i < 8; ++i) s += (i ? ", " : "") + extra[i];
        return bad(std::to_string(extra.size()) + " other exported symbols (" + s +
                   (extra.size() > 8 ? ", ..." : "") + "): build with llmc_add_plugin (hidden visibility, version script)");
    }
    return ok();
}

const llmc_modifier_descriptor_t *raw_descriptor(const kit_options &o, std::string &why) {
    void *h = dlopen(o.plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        why = std::string("cannot load: ") + dlerror();
        return nullptr;
    }
    void *sym = dlsym(h, LLMC_PLUGIN_ENTRY_SYMBOL);
    if (sym == nullptr) {
        why = "no entry symbol";
        return nullptr;
    }
    const auto *d = reinterpret_cast<llmc_plugin_entry_fn>(sym)();
    if (d == nullptr) why = "entry returned NULL";
    return d;
}

check_result abi_version(const kit_options &o) {
    std::string why;
    const auto *d = raw_descriptor(o, why);
    if (d == nullptr) return bad(why);
    if (d->struct_size < offsetof(llmc_modifier_descriptor_t, name)) return bad("struct_size too small");
    std::string v = abi_version_check(d->abi_version);
    if (!v.empty()) return bad(v);
    return ok("ABI " + std::to_string(d->abi_version.major) + "." + std::to_string(d->abi_version.minor));
}

check_result descriptor_fields(const kit_options &o) {
    try {
        auto lib = plugin_library::load(o.plugin);
        static const std::regex semver(R"(^\d+\.\d+\.\d+([-+].*)?$)");
        if (!std::regex_match(lib->version(), semver)) return bad("version '" + lib->version() + "' is not MAJOR.MINOR.PATCH");
        static const std::regex ident(R"(^[A-Za-z_][A-Za-z0-9_]*$)");
        if (!std::regex_match(lib->name(), ident))
            return bad("name '" + lib->name() + "' is not a valid recipe key (an identifier)");
        return ok(lib->name() + " " + lib->version());
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result params_json_valid(const kit_options &o) {
    std::string why;
    const auto *d = raw_descriptor(o, why);
    if (d == nullptr) return bad(why);
    if (d->params_json == nullptr) return bad("params_json is NULL");
    auto j = json::parse(d->params_json, nullptr, false);
    if (j.is_discarded()) return bad("params_json is not valid JSON");
    if (!j.is_array()) return bad("params_json is not a JSON array");
    static const std::set<std::string> types = {"bool", "int", "float", "string", "string_list", "float_list", "any"};
    std::set<std::string> names;
    for (const auto &p : j) {
        if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) return bad("an entry lacks a string 'name': " + p.dump());
        const std::string n = p["name"];
        if (!names.insert(n).second) return bad("parameter '" + n + "' declared twice");
        if (!p.contains("type") || !p["type"].is_string() || types.count(p["type"].get<std::string>()) == 0)
            return bad("parameter '" + n + "' has no known type (bool, int, float, string, string_list, float_list, any)");
    }
    return ok(std::to_string(j.size()) + " parameters");
}

check_result create_destroy(const kit_options &o) {
    try {
        fixture f(o);
        return ok();
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result invalid_params_rejected(const kit_options &o) {
    try {
        fixture f(o);
        const auto &d = f.lib->descriptor();
        auto try_create = [&](const std::string &params, std::string &msg) {
            host_sink sink;
            llmc_modifier_t *m = nullptr;
            llmc_status_t st = d.create(f.inst->host_table(), params.c_str(), &m, sink.get());
            if (st == LLMC_OK && m != nullptr) d.destroy(m);
            msg = sink.message();
            return st;
        };
        std::string msg;
        if (try_create(R"({"__llmc_conformance_no_such_field__": 1})", msg) == LLMC_OK)
            return bad("an unknown field was accepted");
        if (msg.empty()) return bad("an unknown field was rejected without a message");
        if (msg.find("__llmc_conformance_no_such_field__") == std::string::npos)
            return warn("the message for an unknown field does not name it: " + msg);
        if (try_create("{not json", msg) == LLMC_OK) return bad("malformed JSON parameters were accepted");
        // A declared parameter given a value of the wrong type.
        json schema = f.lib->params();
        for (const auto &p : schema) {
            const std::string t = p.value("type", "any");
            json wrong;
            if (t == "bool" || t == "int" || t == "float" || t == "float_list") wrong = json::object({{"x", 1}});
            else if (t == "string" || t == "string_list") wrong = 12345;
            else continue;
            json fields = json::parse(o.params);
            fields[p["name"].get<std::string>()] = wrong;
            if (try_create(fields.dump(), msg) == LLMC_OK)
                return bad("parameter '" + p["name"].get<std::string>() + "' (" + t + ") accepted " + wrong.dump());
            if (msg.empty()) return bad("a wrongly typed parameter was rejected without a message");
            break;
        }
        return ok();
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result lifecycle_in_order(const kit_options &o) {
    try {
        fixture f(o);
        pipeline_options p;
        p.kind = pipeline_kind::independent;
        if (f.inst->requires_calibration_data()) p.batches = tiny_batches();
        f.s->initialize();
        pipeline_run(*f.s, p);
        f.s->finalize();
        return ok(f.inst->requires_calibration_data() ? "sequential pipeline" : "datafree pipeline");
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result unknown_event_ignored(const kit_options &o) {
    try {
        fixture f(o);
        f.s->initialize();
        const auto &d = f.lib->descriptor();
        llmc_event_t ev = event_of(0x7fff0001u);
        for (auto fn : {d.on_event, d.on_update}) {
            if (fn == nullptr) continue;
            host_sink sink;
            llmc_status_t st = fn(f.inst->raw_instance(), &ev, sink.get());
            if (st != LLMC_OK) return bad("an unknown event type returned " + sink.describe(st));
        }
        f.s->finalize();
        return ok();
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result misuse_bad_state(const kit_options &o) {
    try {
        fixture f(o);
        const auto &d = f.lib->descriptor();
        llmc_event_t ev = event_of(LLMC_EVENT_CALIBRATION_START);
        if (d.on_calibration_start != nullptr) {
            host_sink sink;
            llmc_status_t st = d.on_calibration_start(f.inst->raw_instance(), &ev, sink.get());
            if (st == LLMC_OK) return warn("an event before on_initialize was accepted (expected BAD_STATE)");
        }
        return ok();
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

check_result no_exception_escape(const kit_options &o) {
    // Any exception reaching here crossed the C ABI: the child's catch reports it as failed, and a
    // noexcept trampoline that terminates shows up as crashed (SIGABRT).
    std::unique_ptr<fixture> fp;
    try {
        fp = std::make_unique<fixture>(o);
    } catch (const std::exception &e) {
        return bad(std::string("cannot set up: ") + e.what());
    }
    fixture &f = *fp;
    const auto &d = f.lib->descriptor();
    host_sink sink;
    llmc_modifier_t *m = nullptr;
    try {
        if (d.create(f.inst->host_table(), "[1,2,3]", &m, sink.get()) == LLMC_OK && m) d.destroy(m);
    } catch (...) {
        return bad("create with a JSON array as parameters let an exception escape");
    }
    try {
        llmc_event_t ev = event_of(LLMC_EVENT_SEQUENTIAL_EPOCH_END);
        if (d.on_sequential_epoch_end) d.on_sequential_epoch_end(f.inst->raw_instance(), nullptr, sink.get());
        if (d.on_event) d.on_event(f.inst->raw_instance(), &ev, sink.get());
    } catch (...) {
        return bad("a callback called out of order let an exception escape");
    }
    return ok();
}

check_result finalize_twice(const kit_options &o) {
    try {
        fixture f(o);
        f.s->initialize();
        f.s->finalize();
        const auto &d = f.lib->descriptor();
        if (d.on_finalize != nullptr) {
            host_sink sink;
            llmc_status_t st = d.on_finalize(f.inst->raw_instance(), sink.get());
            if (st != LLMC_OK && st != LLMC_ERR_BAD_STATE) return bad("second on_finalize returned " + sink.describe(st));
        }
        return ok();
    } catch (const std::exception &e) {
        return bad(e.what());
    }
}

} // namespace

const std::vector<check> &checks_all() {
    static const std::vector<check> all = {
        {"load-rtld-now-local", "the library loads with RTLD_NOW | RTLD_LOCAL (no undefined symbols)", load_rtld_now_local},
        {"entry-symbol", "llmc_plugin_entry is exported and returns the same descriptor every call", entry_symbol},
        {"exports-only-entry", "the dynamic symbol table exports llmc_plugin_entry and nothing else", exports_only_entry},
        {"abi-version", "the descriptor's ABI major equals the host's and its minor is not newer", abi_version},
        {"descriptor-fields", "name, version (semver), description, params_json and the required callbacks are set", descriptor_fields},
        {"params-json-valid", "params_json is a JSON array of {name, type, ...} with known types", params_json_valid},
        {"create-destroy-defaults", "an instance is created with the given (default) parameters and destroyed", create_destroy},
        {"invalid-params-rejected", "unknown fields, malformed JSON and wrongly typed values fail with a message", invalid_params_rejected},
        {"lifecycle-in-order", "initialize, the pipeline's events and finalize succeed on a small real model", lifecycle_in_order},
        {"unknown-event-ignored", "an event type the plugin does not know returns OK", unknown_event_ignored},
        {"misuse-returns-bad-state", "a calibration event before on_initialize is refused, not crashed on", misuse_bad_state},
        {"no-exception-escape", "no C++ exception crosses the C ABI, even on bad input", no_exception_escape},
        {"finalize-twice-safe", "on_finalize a second time returns OK or BAD_STATE and does not crash", finalize_twice},
    };
    return all;
}

} // namespace llmc::kit
