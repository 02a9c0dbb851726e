#include "session/host_services.h"

#include "io/weight_rows.h"
#include "plugin/host_sink.h"
#include "quant/args.h"
#include "quant/observe_joined.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "session/modifier_instance.h"
#include "session/session.h"
#include "util/error.h"
#include "util/float_convert.h"
#include "util/work_pool.h"

#include <ATen/DLConvertor.h>
#include <llmc/sdk/torch.hpp>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace llmc {

namespace {

using namespace quant;

modifier_instance &inst_of(const llmc_host_t *h) { return *static_cast<modifier_instance *>(h->host_data); }
session &session_of(const llmc_host_t *h) { return inst_of(h).owner(); }

// Runs fn; llmc::error -> INVALID_ARG (bad request), anything else -> INTERNAL.
template <class Fn> llmc_status_t guard(llmc_error_sink_t *err, Fn &&fn) noexcept {
    try {
        return fn();
    } catch (const sdk::status_error &e) {
        sink_report(err, e.code(), e.what());
        return e.code();
    } catch (const error &e) {
        sink_report(err, LLMC_ERR_INVALID_ARG, e.what());
        return LLMC_ERR_INVALID_ARG;
    } catch (const std::bad_alloc &) {
        sink_report(err, LLMC_ERR_OUT_OF_MEMORY, "out of memory");
        return LLMC_ERR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        sink_report(err, LLMC_ERR_INTERNAL, std::string("host error: ") + e.what());
        return LLMC_ERR_INTERNAL;
    } catch (...) {
        sink_report(err, LLMC_ERR_INTERNAL, "host error: unknown exception");
        return LLMC_ERR_INTERNAL;
    }
}

[[noreturn]] void raise(llmc_status_t code, const std::string &msg) { throw sdk::status_error(code, msg); }

const char *str(const char *s, const char *what) {
    if (s == nullptr) raise(LLMC_ERR_INVALID_ARG, std::string(what) + " is NULL");
    return s;
}

size_t module_index_of(const llmc_host_t *h, const char *name) {
    int64_t i = session_of(h).module_index(str(name, "module name"));
    if (i < 0) raise(LLMC_ERR_NOT_FOUND, fmt::format("no module named '{}'", name));
    return static_cast<size_t>(i);
}

DLManagedTensor *to_dlpack(const at::Tensor &t) { return at::toDLPack(t); }

std::string shape_str(at::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s.begin(), s.end(), ", ")); }

at::Tensor from_borrowed(const DLTensor *t, const char *what) {
    if (t == nullptr) raise(LLMC_ERR_INVALID_ARG, std::string(what) + " is NULL");
    if (t->device.device_type != kDLCPU) raise(LLMC_ERR_UNSUPPORTED, std::string(what) + ": only CPU tensors");
    if (t->ndim < 0 || (t->ndim > 0 && t->shape == nullptr)) raise(LLMC_ERR_INVALID_ARG, std::string(what) + ": bad shape");
    int64_t n = 1;
    for (int i = 0; i < t->ndim; ++i) {
        if (t->shape[i] < 0) raise(LLMC_ERR_INVALID_ARG, std::string(what) + ": negative dimension");
        n *= t->shape[i];
    }
    if (n > 0 && t->data == nullptr) raise(LLMC_ERR_INVALID_ARG, std::string(what) + ": data is NULL");
    return sdk::borrow_tensor(*t);
}

// ---- core

void host_log(const llmc_host_t *h, int32_t level, const char *message) {
    try {
        const std::string who = h != nullptr ? inst_of(h).name() : "plugin";
        const char *msg = message != nullptr ? message : "";
        switch (level) {
        case LLMC_LOG_TRACE: spdlog::trace("[{}] {}", who, msg); break;
        case LLMC_LOG_DEBUG: spdlog::debug("[{}] {}", who, msg); break;
        case LLMC_LOG_INFO: spdlog::info("[{}] {}", who, msg); break;
        case LLMC_LOG_WARN: spdlog::warn("[{}] {}", who, msg); break;
        case LLMC_LOG_HOST_MISBEHAVING: spdlog::error("[{}] host misbehaving: {}", who, msg); break;
        case LLMC_LOG_PLUGIN_MISBEHAVING: spdlog::error("[{}] plugin misbehaving: {}", who, msg); break;
        case LLMC_LOG_FATAL: spdlog::critical("[{}] {}", who, msg); break;
        default: spdlog::error("[{}] {}", who, msg); break;
        }
    } catch (...) {
    }
}

int host_is_cancelled(const llmc_host_t *h) { return h != nullptr && session_of(h).cancelled() ? 1 : 0; }

void host_progress(const llmc_host_t *h, const char *label, uint64_t done, uint64_t total) {
    try {
        spdlog::debug("[{}] {}: {}/{}", inst_of(h).name(), label != nullptr ? label : "", done, total);
    } catch (...) {
    }
}

const void *host_get_extension(const llmc_host_t *, const char *) { return nullptr; }

void host_report(const llmc_host_t *h, const char *module, const char *key, double value) {
    try {
        if (module == nullptr || key == nullptr) return;
        session_of(h).report_add(module, key, value);
    } catch (...) {
    }
}

// ---- model view

size_t model_module_count(const llmc_host_t *h) { return session_of(h).module_count(); }

llmc_status_t model_module_info(const llmc_host_t *h, size_t index, llmc_module_info_t *out, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (out == nullptr) raise(LLMC_ERR_INVALID_ARG, "out is NULL");
        session &s = session_of(h);
        if (index >= s.module_count())
            raise(LLMC_ERR_NOT_FOUND, fmt::format("module index {} out of range ({} modules)", index, s.module_count()));
        // Fill only what the caller's struct has room for (it may be an older, smaller one).
        llmc_module_info_t info{};
        info.struct_size = sizeof(info);
        const module &m = s.module_at(index);
        info.name = m.name().c_str();
        info.class_name = m.class_name().c_str();
        info.parent = s.module_parent(index);
        info.layer = s.module_layer(index);
        const uint32_t n = out->struct_size == 0 ? sizeof(info) : std::min<uint32_t>(out->struct_size, sizeof(info));
        std::memcpy(out, &info, n);
        out->struct_size = n;
        return LLMC_OK;
    });
}

llmc_status_t model_module_find(const llmc_host_t *h, const char *name, size_t *index, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (index == nullptr) raise(LLMC_ERR_INVALID_ARG, "index is NULL");
        *index = module_index_of(h, name);
        return LLMC_OK;
    });
}

std::vector<std::string> strings(const char *const *a, size_t n, const char *what) {
    if (n > 0 && a == nullptr) raise(LLMC_ERR_INVALID_ARG, std::string(what) + " is NULL");
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) out.emplace_back(str(a[i], what));
    return out;
}

llmc_status_t model_module_match(const llmc_host_t *h, const char *const *targets, size_t target_count,
                                 const char *const *ignore, size_t ignore_count, llmc_module_visit_fn visit,
                                 void *user_data, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (visit == nullptr) raise(LLMC_ERR_INVALID_ARG, "visit is NULL");
        session &s = session_of(h);
        for (size_t i : s.match(strings(targets, target_count, "targets"), strings(ignore, ignore_count, "ignore"))) {
            llmc_status_t st = visit(user_data, i, s.module_at(i).name().c_str());
            if (st != LLMC_OK) return st;
        }
        return LLMC_OK;
    });
}

// A module whose tensors a plugin is about to see or change: resident, and with any weight
// qparams left to the host stored first (they are of the weight as it was when deferred).
llmc::module &module_for_plugin(const llmc_host_t *h, const char *module) {
    session &s = session_of(h);
    const size_t i = module_index_of(h, module);
    s.weight_qparams_settle(i);
    return s.module_resident(i);
}

llmc_status_t model_tensor_names(const llmc_host_t *h, const char *module, uint32_t kind, llmc_name_visit_fn visit,
                                 void *user_data, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (visit == nullptr) raise(LLMC_ERR_INVALID_ARG, "visit is NULL");
        if (kind != LLMC_TENSOR_PARAMETER && kind != LLMC_TENSOR_BUFFER)
            raise(LLMC_ERR_INVALID_ARG, fmt::format("unknown tensor kind {}", kind));
        llmc::module &m = module_for_plugin(h, module);
        for (const auto &kv : kind == LLMC_TENSOR_PARAMETER ? m.params : m.buffers) {
            llmc_status_t st = visit(user_data, kv.first.c_str());
            if (st != LLMC_OK) return st;
        }
        return LLMC_OK;
    });
}

at::Tensor *lookup(llmc::module &m, const std::string &name) {
    auto p = m.params.find(name);
    if (p != m.params.end()) return &p->second;
    auto b = m.buffers.find(name);
    if (b != m.buffers.end()) return &b->second;
    return nullptr;
}

llmc_status_t model_tensor_get(const llmc_host_t *h, const char *module, const char *name, DLManagedTensor **out,
                               llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (out == nullptr) raise(LLMC_ERR_INVALID_ARG, "out is NULL");
        *out = nullptr;
        llmc::module &m = module_for_plugin(h, module);
        at::Tensor *t = lookup(m, str(name, "tensor name"));
        if (t == nullptr || !t->defined())
            raise(LLMC_ERR_NOT_FOUND, fmt::format("module '{}' has no parameter or buffer '{}'", module, name));
        *out = to_dlpack(*t);
        return LLMC_OK;
    });
}

llmc_status_t model_tensor_set(const llmc_host_t *h, const char *module, const char *name, const DLTensor *value,
                               llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        llmc::module &m = module_for_plugin(h, module);
        const std::string n = str(name, "tensor name");
        if (n.empty()) raise(LLMC_ERR_INVALID_ARG, "tensor name is empty");
        at::Tensor v = from_borrowed(value, "value");
        auto p = m.params.find(n);
        if (p != m.params.end()) {
            if (p->second.sizes() != v.sizes())
                raise(LLMC_ERR_INVALID_ARG, fmt::format("{}.{}: shape {} does not match the parameter's {}", module, n,
                                                        shape_str(v.sizes()), shape_str(p->second.sizes())));
            p->second.copy_(v); // converts to the parameter's dtype
        } else {
            m.buffers[n] = v.clone();
        }
        return LLMC_OK;
    });
}

llmc_status_t model_tensor_remove(const llmc_host_t *h, const char *module, const char *name, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        llmc::module &m = module_for_plugin(h, module);
        const std::string n = str(name, "tensor name");
        if (m.params.count(n) != 0) raise(LLMC_ERR_INVALID_ARG, fmt::format("{}.{} is a parameter", module, n));
        if (m.buffers.erase(n) == 0) raise(LLMC_ERR_NOT_FOUND, fmt::format("module '{}' has no buffer '{}'", module, n));
        return LLMC_OK;
    });
}

llmc_status_t model_hook_add(const llmc_host_t *h, const char *module, uint32_t kind, llmc_hook_fn fn,
                             void *user_data, uint64_t *id, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (fn == nullptr || id == nullptr) raise(LLMC_ERR_INVALID_ARG, "fn or id is NULL");
        modifier_instance &inst = inst_of(h);
        if (inst.finalized()) raise(LLMC_ERR_BAD_STATE, "hook_add after finalize");
        *id = inst.owner().hook_add(inst.id(), module_index_of(h, module), kind, fn, user_data, inst.name());
        return LLMC_OK;
    });
}

llmc_status_t model_hook_remove(const llmc_host_t *h, uint64_t id, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        modifier_instance &inst = inst_of(h);
        if (!inst.owner().hook_remove(inst.id(), id))
            raise(LLMC_ERR_NOT_FOUND, fmt::format("no hook {} registered by this instance", id));
        return LLMC_OK;
    });
}

// ---- quantization

llmc_status_t call_string(llmc_string_fn out, void *ud, const std::string &s) {
    if (out == nullptr) raise(LLMC_ERR_INVALID_ARG, "out is NULL");
    return out(ud, s.c_str());
}

nlohmann::json parse_json(const char *text, const char *what) {
    auto j = nlohmann::json::parse(str(text, what), nullptr, false);
    if (j.is_discarded()) raise(LLMC_ERR_INVALID_ARG, fmt::format("{} is not valid JSON: {}", what, text));
    return j;
}

// A preset name, a JSON string of a preset name, or a scheme mapping.
quant_scheme resolve_scheme(const char *text) {
    const std::string s = str(text, "scheme");
    auto j = nlohmann::json::parse(s, nullptr, false);
    if (j.is_discarded() || j.is_string()) {
        const std::string name = j.is_string() ? j.get<std::string>() : s;
        return preset_scheme(name, {"Linear"});
    }
    if (!j.is_object()) raise(LLMC_ERR_INVALID_ARG, "scheme must be a preset name or a mapping");
    if (!j.contains("targets")) j["targets"] = {"Linear"};
    return scheme_from_json(j, "scheme");
}

llmc_status_t quant_scheme_resolve(const llmc_host_t *, const char *scheme, llmc_string_fn out, void *ud,
                                   llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t { return call_string(out, ud, scheme_to_json(resolve_scheme(scheme)).dump()); });
}

llmc_status_t quant_scheme_attach(const llmc_host_t *h, const char *module, const char *scheme_json,
                                  llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        modifier_instance &inst = inst_of(h);
        const size_t i = module_index_of(h, module);
        const std::string canonical = scheme_to_json(resolve_scheme(scheme_json)).dump();
        inst.owner().weight_qparams_settle(i); // deferred ones belong to the scheme they were left under
        inst.owner().scheme_attach(inst.id(), i, canonical);
        return LLMC_OK;
    });
}

llmc_status_t quant_scheme_get(const llmc_host_t *h, const char *module, llmc_string_fn out, void *ud,
                               llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        module_index_of(h, module);
        const std::string *s = session_of(h).scheme_of(module);
        if (s == nullptr) raise(LLMC_ERR_NOT_FOUND, fmt::format("module '{}' has no quantization scheme", module));
        return call_string(out, ud, *s);
    });
}

llmc_status_t quant_qparams_compute(const llmc_host_t *, const char *args_json, const DLTensor *x,
                                    DLManagedTensor **scale, DLManagedTensor **zero_point, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (scale == nullptr) raise(LLMC_ERR_INVALID_ARG, "scale is NULL");
        quant_args args = args_from_json(parse_json(args_json, "args"), "args");
        qparams q = qparams_observe(args, from_borrowed(x, "x"));
        *scale = to_dlpack(q.scale);
        if (zero_point != nullptr) *zero_point = q.zero_point.defined() ? to_dlpack(q.zero_point) : nullptr;
        return LLMC_OK;
    });
}

// GPTQ calls fake_quantize once per weight column and row task (thousands of times per Linear,
// from several threads) with the same args string: parse each distinct string once.
std::shared_ptr<const quant_args> cached_args(const char *args_json) {
    static std::mutex mu;
    static std::unordered_map<std::string, std::shared_ptr<const quant_args>> cache;
    const std::string key = str(args_json, "args");
    {
        std::lock_guard<std::mutex> lock(mu);
        if (auto it = cache.find(key); it != cache.end()) return it->second;
    }
    auto args = std::make_shared<const quant_args>(args_from_json(parse_json(args_json, "args"), "args"));
    std::lock_guard<std::mutex> lock(mu);
    if (cache.size() >= 256) cache.clear(); // plugins use a handful; never grow without bound
    cache.emplace(key, args);
    return args;
}

llmc_status_t quant_fake_quantize(const llmc_host_t *, const char *args_json, const DLTensor *x, const DLTensor *scale,
                                  const DLTensor *zero_point, const DLTensor *g_idx, DLManagedTensor **out,
                                  llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (out == nullptr) raise(LLMC_ERR_INVALID_ARG, "out is NULL");
        const std::shared_ptr<const quant_args> args_ptr = cached_args(args_json);
        const quant_args &args = *args_ptr;
        qparams q;
        q.scale = from_borrowed(scale, "scale");
        if (zero_point != nullptr) q.zero_point = from_borrowed(zero_point, "zero_point");
        at::Tensor gi;
        if (g_idx != nullptr) gi = from_borrowed(g_idx, "g_idx");
        at::Tensor xt = from_borrowed(x, "x");
        // The ABI promises x's dtype (the numerics compute in the wider of x and the scale).
        at::Tensor r = fake_quantize(args, xt, q, g_idx != nullptr ? &gi : nullptr).to(xt.scalar_type());
        *out = to_dlpack(r);
        return LLMC_OK;
    });
}

} // namespace
} // namespace llmc

// The opaque handle behind llmc_observer_t.
struct llmc_observer {
    llmc::quant::observer impl;
};

namespace llmc {
namespace {

using namespace quant;

llmc_status_t quant_observer_create(const llmc_host_t *, const char *args_json, uint32_t role, llmc_observer_t **out,
                                    llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (out == nullptr) raise(LLMC_ERR_INVALID_ARG, "out is NULL");
        *out = nullptr;
        if (role != LLMC_OBSERVE_WEIGHT && role != LLMC_OBSERVE_ACTIVATION)
            raise(LLMC_ERR_INVALID_ARG, fmt::format("unknown observed role {}", role));
        quant_args args = args_from_json(parse_json(args_json, "args"), "args");
        *out = new llmc_observer{
            observer(args, role == LLMC_OBSERVE_WEIGHT ? observed_role::weight : observed_role::activation)};
        return LLMC_OK;
    });
}

llmc_status_t quant_observer_observe(const llmc_host_t *, llmc_observer_t *o, const DLTensor *x,
                                     llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (o == nullptr) raise(LLMC_ERR_INVALID_ARG, "observer is NULL");
        o->impl.observe(from_borrowed(x, "x"));
        return LLMC_OK;
    });
}

llmc_status_t quant_observer_qparams(const llmc_host_t *, llmc_observer_t *o, DLManagedTensor **scale,
                                     DLManagedTensor **zero_point, DLManagedTensor **global_scale,
                                     llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (o == nullptr || scale == nullptr) raise(LLMC_ERR_INVALID_ARG, "observer or scale is NULL");
        if (!o->impl.has_stats()) raise(LLMC_ERR_BAD_STATE, "the observer has seen nothing yet");
        qparams q = o->impl.get_qparams();
        *scale = to_dlpack(q.scale);
        if (zero_point != nullptr) *zero_point = q.zero_point.defined() ? to_dlpack(q.zero_point) : nullptr;
        if (global_scale != nullptr) *global_scale = q.global_scale.defined() ? to_dlpack(q.global_scale) : nullptr;
        return LLMC_OK;
    });
}

void quant_observer_destroy(const llmc_host_t *, llmc_observer_t *o) { delete o; }

llmc_status_t quant_observer_observe_input(const llmc_host_t *, llmc_observer_t *o, const DLTensor *x,
                                           llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (o == nullptr) raise(LLMC_ERR_INVALID_ARG, "observer is NULL");
        o->impl.observe_input(from_borrowed(x, "x"));
        return LLMC_OK;
    });
}

llmc_status_t quant_enable(const llmc_host_t *h, int enabled, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        modifier_instance &inst = inst_of(h);
        inst.owner().quantization_enable(inst.id(), enabled != 0);
        return LLMC_OK;
    });
}

// The weights args of `module`'s attached scheme, for the host to observe them: NOT_FOUND without
// a scheme, UNSUPPORTED (saying `what` cannot be done) for no or dynamic weights, the imatrix_mse
// observer (its statistics are the plugin's) and, unless `tensor_group_ok`, tensor_group.
quant_args host_observable_weights(session &s, const std::string &module, const char *what, bool tensor_group_ok) {
    const std::string *json = s.scheme_of(module);
    if (json == nullptr) raise(LLMC_ERR_NOT_FOUND, fmt::format("module '{}' has no quantization scheme", module));
    const quant_scheme scheme = scheme_from_json(nlohmann::json::parse(*json), module);
    auto unsupported = [&](const std::string &why) {
        raise(LLMC_ERR_UNSUPPORTED, fmt::format("module '{}': {}: {}", module, what, why));
    };
    if (!scheme.weights) unsupported("its scheme quantizes no weights");
    const quant_args &w = *scheme.weights;
    if (w.is_dynamic()) unsupported("dynamic weights have no stored qparams");
    if (!tensor_group_ok && w.strategy == quant_strategy::tensor_group)
        unsupported("tensor_group partners share one global scale");
    if (observer(w, observed_role::weight).kind() == "imatrix_mse")
        unsupported("imatrix_mse needs the module's inputs");
    return w;
}

llmc_status_t quant_weight_qparams_defer(const llmc_host_t *h, const char *module, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        session &s = session_of(h);
        const size_t i = module_index_of(h, module);
        s.weight_qparams_defer(
            i, host_observable_weights(s, str(module, "module"), "weight qparams cannot be left to the host", false));
        return LLMC_OK;
    });
}

llmc_status_t quant_weight_qparams_store(const llmc_host_t *h, const char *const *modules, size_t count,
                                         llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (modules == nullptr || count == 0) raise(LLMC_ERR_INVALID_ARG, "no modules given");
        session &s = session_of(h);
        std::vector<std::string> names;
        quant_args args;
        for (size_t k = 0; k < count; ++k) {
            const std::string name = str(modules[k], "module");
            module_index_of(h, name.c_str()); // NOT_FOUND for a name the model lacks
            if (std::find(names.begin(), names.end(), name) != names.end())
                raise(LLMC_ERR_INVALID_ARG, fmt::format("module '{}' is given twice", name));
            const quant_args w = host_observable_weights(s, name, "the host cannot observe its weights", true);
            if (k == 0) args = w;
            else if (!(w == args))
                raise(LLMC_ERR_INVALID_ARG,
                      fmt::format("module '{}': its weights args differ from those of '{}', observed with it", name,
                                  names.front()));
            names.push_back(name);
        }
        if (count > 1 && args.strategy != quant_strategy::tensor_group)
            raise(LLMC_ERR_INVALID_ARG, fmt::format("modules observed together must be a tensor_group partner set; "
                                                    "'{}' has strategy {}",
                                                    names.front(), to_string(*args.strategy)));
        std::vector<llmc::module *> mods;
        std::vector<at::Tensor> weights;
        std::vector<row_reader> reads;
        for (const std::string &name : names) {
            llmc::module &m = module_for_plugin(h, name.c_str());
            auto w = m.params.find("weight");
            if (w == m.params.end() || !w->second.defined())
                raise(LLMC_ERR_NOT_FOUND, fmt::format("module '{}' has no parameter 'weight'", name));
            mods.push_back(&m);
            weights.push_back(w->second);
            reads.push_back(weight_rows_reader(w->second));
        }
        const std::vector<qparams> qps = qparams_observe_joined(args, weights, reads);
        // What the plugin's own tensor_set of the observer's results would leave (a copy each).
        serial_aten_ops small;
        for (size_t k = 0; k < mods.size(); ++k) {
            const at::ScalarType dtype = weights[k].scalar_type();
            const qparams &q = qps[k];
            mods[k]->buffers["weight_scale"] = float_convert_pooled(q.scale, dtype);
            if (!args.symmetric && q.zero_point.defined()) mods[k]->buffers["weight_zero_point"] = q.zero_point.clone();
            if (q.global_scale.defined())
                mods[k]->buffers["weight_global_scale"] = q.global_scale.to(dtype).to(at::kFloat, false, /*copy=*/true);
        }
        return LLMC_OK;
    });
}

// ---- replay

llmc_status_t replay_capture(const llmc_host_t *h, const char *module, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        modifier_instance &inst = inst_of(h);
        inst.owner().replay_capture(inst.id(), module_index_of(h, module));
        return LLMC_OK;
    });
}

llmc_status_t replay_run(const llmc_host_t *h, const char *module, const llmc_named_tensor_t *overrides,
                         size_t override_count, llmc_replay_fn fn, void *ud, llmc_error_sink_t *err) {
    return guard(err, [&]() -> llmc_status_t {
        if (fn == nullptr) raise(LLMC_ERR_INVALID_ARG, "fn is NULL");
        if (override_count > 0 && overrides == nullptr) raise(LLMC_ERR_INVALID_ARG, "overrides is NULL");
        session &s = session_of(h);
        // Overridden weights must not stand in for the weight deferred qparams are of.
        if (override_count > 0) s.weight_qparams_settle_within(module_index_of(h, module));
        llmc::module &m = s.module_resident(module_index_of(h, module));
        if (!s.replay_open())
            raise(LLMC_ERR_UNAVAILABLE, "replay is only available during SEQUENTIAL_EPOCH_END");
        const auto *inputs = s.replay_inputs(m.name());
        if (inputs == nullptr)
            raise(LLMC_ERR_UNAVAILABLE,
                  fmt::format("no cached inputs for '{}' in this subgraph (call replay_capture first)", m.name()));
        // Swap parameters in, restore them whatever happens.
        struct saved_param {
            llmc::module *owner;
            std::string name;
            at::Tensor value;
        };
        std::vector<saved_param> saved;
        struct restore {
            std::vector<saved_param> &saved;
            ~restore() {
                for (auto &p : saved) p.owner->params[p.name] = p.value;
            }
        } guard_restore{saved};
        for (size_t i = 0; i < override_count; ++i) {
            const std::string n = str(overrides[i].name, "override name");
            // "weight" is the module's own; "q_proj.weight" belongs to a module inside it.
            const auto dot = n.rfind('.');
            llmc::module &owner = dot == std::string::npos ? m : s.module_named(m.name() + "." + n.substr(0, dot));
            const std::string pname = dot == std::string::npos ? n : n.substr(dot + 1);
            auto p = owner.params.find(pname);
            if (p == owner.params.end())
                raise(LLMC_ERR_NOT_FOUND, fmt::format("'{}' has no parameter '{}'", owner.name(), pname));
            at::Tensor v = from_borrowed(overrides[i].tensor, "override");
            if (v.sizes() != p->second.sizes())
                raise(LLMC_ERR_INVALID_ARG, fmt::format("override {}.{}: shape {} differs from {}", owner.name(), pname,
                                                        shape_str(v.sizes()), shape_str(p->second.sizes())));
            saved.push_back({&owner, pname, p->second});
            p->second = v.to(p->second.scalar_type()).clone();
        }
        hook_switch &sw = s.model().hooks();
        const bool was = sw.enabled;
        sw.enabled = false;
        struct reset {
            hook_switch &sw;
            bool was;
            ~reset() { sw.enabled = was; }
        } guard_reset{sw, was};
        for (size_t b = 0; b < inputs->size(); ++b) {
            at::Tensor y = m.call((*inputs)[b]);
            DLManagedTensor *d = to_dlpack(y);
            host_sink sink;
            llmc_status_t st = fn(ud, b, &d->dl_tensor, sink.get());
            d->deleter(d);
            if (st != LLMC_OK) raise(st, sink.describe(st));
        }
        return LLMC_OK;
    });
}

size_t replay_batch_count(const llmc_host_t *h) {
    try {
        return session_of(h).replay_batch_count();
    } catch (...) {
        return 0;
    }
}

const llmc_model_api_t model_api = {
    sizeof(llmc_model_api_t), model_module_count, model_module_info,  model_module_find,
    model_module_match,       model_tensor_names, model_tensor_get,   model_tensor_set,
    model_tensor_remove,      model_hook_add,     model_hook_remove,
};
const llmc_quant_api_t quant_api = {
    sizeof(llmc_quant_api_t), quant_scheme_resolve,  quant_scheme_attach,    quant_scheme_get,
    quant_qparams_compute,    quant_fake_quantize,   quant_enable,           quant_observer_create,
    quant_observer_observe,   quant_observer_qparams, quant_observer_destroy, quant_observer_observe_input,
    quant_weight_qparams_defer, quant_weight_qparams_store,
};
const llmc_replay_api_t replay_api = {sizeof(llmc_replay_api_t), replay_capture, replay_run, replay_batch_count};

} // namespace

llmc_host_t host_services_table(modifier_instance &inst) {
    llmc_host_t h{};
    h.struct_size = sizeof(h);
    h.abi_version = LLMC_ABI_VERSION_INIT;
    h.host_data = &inst;
    h.name = "llmc-host";
    h.version = LLMC_VERSION_STRING;
    h.log = host_log;
    h.is_cancelled = host_is_cancelled;
    h.progress = host_progress;
    h.get_extension = host_get_extension;
    h.model = &model_api;
    h.quant = &quant_api;
    h.replay = &replay_api;
    h.report = host_report;
    return h;
}

} // namespace llmc
