// A C++ face over the host table a modifier instance received: the calls throw status_error
// with the host's message, so plugin code reads straight through.
#pragma once

#include <llmc/host.h>
#include <llmc/sdk/errors.hpp>

#include <cstdarg>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llmc::sdk {

// Owning handle for a DLManagedTensor received from the host: calls the deleter once.
struct dlpack_deleter {
    void operator()(DLManagedTensor *t) const noexcept {
        if (t != nullptr && t->deleter != nullptr) t->deleter(t);
    }
};
using dlpack_ptr = std::unique_ptr<DLManagedTensor, dlpack_deleter>;

struct module_info {
    size_t index = 0;
    std::string name;
    std::string class_name;
    int64_t parent = -1;
    int64_t layer = -1;
};

// What a hook callback sees (borrowed views, valid during the call only).
struct hook_call {
    const llmc_hook_call_t *raw;
    const std::string &module() const { return module_; }
    const DLTensor &input(size_t i = 0) const {
        if (i >= raw->input_count || raw->inputs[i] == nullptr)
            throw status_error(LLMC_ERR_INVALID_ARG, "hook input " + std::to_string(i) + " is absent");
        return *raw->inputs[i];
    }
    size_t input_count() const { return raw->input_count; }
    const DLTensor *output() const { return raw->output; }
    std::string module_;
};
using hook_fn = std::function<void(const hook_call &)>;

struct qparams_result {
    dlpack_ptr scale, zero_point, global_scale; // zero_point / global_scale may be empty
};

// A host observer (owns the handle; destroyed with this object).
class observer {
  public:
    observer(const llmc_host_t *h, llmc_observer_t *o) : h_(h), o_(o) {}
    ~observer() {
        if (o_ != nullptr) h_->quant->observer_destroy(h_, o_);
    }
    observer(const observer &) = delete;
    observer &operator=(const observer &) = delete;
    void observe(const DLTensor &x) {
        error_sink e;
        e.check(h_->quant->observer_observe(h_, o_, &x, e.get()), "observe");
    }
    // imatrix_mse: the module's inputs weigh the weight's error (ABI 1.1; a 1.0 host lacks it).
    void observe_input(const DLTensor &x) {
        if (!LLMC_HAS_FIELD(h_->quant, llmc_quant_api_t, observer_observe_input) ||
            h_->quant->observer_observe_input == nullptr)
            throw status_error(LLMC_ERR_UNSUPPORTED, "this host has no observer_observe_input (ABI < 1.1)");
        error_sink e;
        e.check(h_->quant->observer_observe_input(h_, o_, &x, e.get()), "observe input");
    }
    qparams_result qparams() const {
        DLManagedTensor *s = nullptr, *z = nullptr, *g = nullptr;
        error_sink e;
        e.check(h_->quant->observer_qparams(h_, o_, &s, &z, &g, e.get()), "observer qparams");
        return {dlpack_ptr(s), dlpack_ptr(z), dlpack_ptr(g)};
    }

  private:
    const llmc_host_t *h_;
    llmc_observer_t *o_;
};

class host_ref {
  public:
    explicit host_ref(const llmc_host_t *h = nullptr) : h_(h) {}
    const llmc_host_t *raw() const { return h_; }
    explicit operator bool() const { return h_ != nullptr; }

    // --- logging and control
    void log(llmc_log_level_t level, const std::string &msg) const {
        if (h_ != nullptr && h_->log != nullptr) h_->log(h_, level, msg.c_str());
    }
    void debug(const std::string &m) const { log(LLMC_LOG_DEBUG, m); }
    void info(const std::string &m) const { log(LLMC_LOG_INFO, m); }
    void warn(const std::string &m) const { log(LLMC_LOG_WARN, m); }
    bool cancelled() const { return h_ != nullptr && h_->is_cancelled != nullptr && h_->is_cancelled(h_) != 0; }
    // Throws LLMC_ERR_CANCELLED when the user asked to stop: call it in long loops.
    void check_cancelled() const {
        if (cancelled()) throw status_error(LLMC_ERR_CANCELLED, "cancelled");
    }
    // A per-module figure for the run report (no-op on hosts without the function).
    void report(const std::string &module, const std::string &key, double value) const {
        if (h_ != nullptr && LLMC_HAS_FIELD(h_, llmc_host_t, report) && h_->report != nullptr)
            h_->report(h_, module.c_str(), key.c_str(), value);
    }
    void progress(const std::string &label, uint64_t done, uint64_t total) const {
        if (h_ != nullptr && h_->progress != nullptr) h_->progress(h_, label.c_str(), done, total);
    }

    // --- model view
    size_t module_count() const { return model().module_count(h_); }
    module_info module(size_t index) const {
        llmc_module_info_t info{};
        info.struct_size = sizeof(info);
        error_sink e;
        e.check(model().module_info(h_, index, &info, e.get()), "module_info");
        return {index, info.name, info.class_name, info.parent, info.layer};
    }
    module_info module(const std::string &name) const {
        size_t index = 0;
        error_sink e;
        e.check(model().module_find(h_, name.c_str(), &index, e.get()), "module '" + name + "'");
        return module(index);
    }
    std::vector<std::string> match(const std::vector<std::string> &targets,
                                   const std::vector<std::string> &ignore = {}) const {
        std::vector<const char *> t, i;
        for (const auto &s : targets) t.push_back(s.c_str());
        for (const auto &s : ignore) i.push_back(s.c_str());
        std::vector<std::string> out;
        error_sink e;
        auto visit = [](void *ud, size_t, const char *name) -> llmc_status_t {
            static_cast<std::vector<std::string> *>(ud)->push_back(name);
            return LLMC_OK;
        };
        e.check(model().module_match(h_, t.data(), t.size(), i.data(), i.size(), visit, &out, e.get()), "match");
        return out;
    }
    std::vector<std::string> tensor_names(const std::string &module, llmc_tensor_kind_t kind) const {
        std::vector<std::string> out;
        error_sink e;
        auto visit = [](void *ud, const char *name) -> llmc_status_t {
            static_cast<std::vector<std::string> *>(ud)->push_back(name);
            return LLMC_OK;
        };
        e.check(model().tensor_names(h_, module.c_str(), kind, visit, &out, e.get()), "tensor_names of '" + module + "'");
        return out;
    }
    dlpack_ptr tensor_get(const std::string &module, const std::string &name) const {
        DLManagedTensor *out = nullptr;
        error_sink e;
        e.check(model().tensor_get(h_, module.c_str(), name.c_str(), &out, e.get()), "get " + module + "." + name);
        return dlpack_ptr(out);
    }
    void tensor_set(const std::string &module, const std::string &name, const DLTensor &value) const {
        error_sink e;
        e.check(model().tensor_set(h_, module.c_str(), name.c_str(), &value, e.get()), "set " + module + "." + name);
    }
    void tensor_remove(const std::string &module, const std::string &name) const {
        error_sink e;
        e.check(model().tensor_remove(h_, module.c_str(), name.c_str(), e.get()), "remove " + module + "." + name);
    }
    // Registers a hook; the closure lives in `owner` (the modifier) until it is destroyed.
    uint64_t hook_add(const std::string &module, llmc_hook_kind_t kind, hook_fn fn,
                      std::vector<std::unique_ptr<hook_fn>> &owner) const {
        owner.push_back(std::make_unique<hook_fn>(std::move(fn)));
        uint64_t id = 0;
        error_sink e;
        e.check(model().hook_add(h_, module.c_str(), kind, &host_ref::hook_trampoline, owner.back().get(), &id,
                                 e.get()),
                "hook on '" + module + "'");
        return id;
    }
    void hook_remove(uint64_t id) const {
        error_sink e;
        e.check(model().hook_remove(h_, id, e.get()), "hook_remove");
    }

    // --- quantization service
    std::string scheme_resolve(const std::string &preset_or_json) const {
        std::string out;
        error_sink e;
        e.check(quant().scheme_resolve(h_, preset_or_json.c_str(), &host_ref::string_out, &out, e.get()),
                "scheme '" + preset_or_json + "'");
        return out;
    }
    void scheme_attach(const std::string &module, const std::string &scheme_json) const {
        error_sink e;
        e.check(quant().scheme_attach(h_, module.c_str(), scheme_json.c_str(), e.get()), "attach scheme to '" + module + "'");
    }
    // Empty string when the module has no scheme.
    std::string scheme_get(const std::string &module) const {
        std::string out;
        error_sink e;
        llmc_status_t s = quant().scheme_get(h_, module.c_str(), &host_ref::string_out, &out, e.get());
        if (s == LLMC_ERR_NOT_FOUND) return "";
        e.check(s, "scheme of '" + module + "'");
        return out;
    }
    std::pair<dlpack_ptr, dlpack_ptr> qparams(const std::string &args_json, const DLTensor &x, bool want_zp = true) const {
        DLManagedTensor *scale = nullptr, *zp = nullptr;
        error_sink e;
        e.check(quant().qparams_compute(h_, args_json.c_str(), &x, &scale, want_zp ? &zp : nullptr, e.get()), "qparams");
        return {dlpack_ptr(scale), dlpack_ptr(zp)};
    }
    dlpack_ptr fake_quantize(const std::string &args_json, const DLTensor &x, const DLTensor &scale,
                             const DLTensor *zero_point = nullptr, const DLTensor *g_idx = nullptr) const {
        DLManagedTensor *out = nullptr;
        error_sink e;
        e.check(quant().fake_quantize(h_, args_json.c_str(), &x, &scale, zero_point, g_idx, &out, e.get()),
                "fake_quantize");
        return dlpack_ptr(out);
    }
    std::unique_ptr<sdk::observer> make_observer(const std::string &args_json, llmc_observed_role_t role) const {
        llmc_observer_t *o = nullptr;
        error_sink e;
        e.check(quant().observer_create(h_, args_json.c_str(), role, &o, e.get()), "observer");
        return std::make_unique<sdk::observer>(h_, o);
    }
    // True when the host took the module's weight qparams over (quant.weight_qparams_defer);
    // false when it cannot (its args, or a host before ABI 1.2): observe and store them yourself.
    bool weight_qparams_defer(const std::string &module) const {
        if (!LLMC_HAS_FIELD(h_->quant, llmc_quant_api_t, weight_qparams_defer) ||
            h_->quant->weight_qparams_defer == nullptr)
            return false;
        error_sink e;
        const llmc_status_t s = quant().weight_qparams_defer(h_, module.c_str(), e.get());
        if (s == LLMC_ERR_UNSUPPORTED) return false;
        e.check(s, "weight qparams of '" + module + "'");
        return true;
    }
    // True when the host observed and stored the weight qparams of `modules` (one module, or a
    // tensor_group partner set observed together: quant.weight_qparams_store); false when it
    // cannot (their args, or a host before ABI 1.3): observe and store them yourself.
    bool weight_qparams_store(const std::vector<std::string> &modules) const {
        if (!LLMC_HAS_FIELD(h_->quant, llmc_quant_api_t, weight_qparams_store) ||
            h_->quant->weight_qparams_store == nullptr)
            return false;
        std::vector<const char *> names;
        for (const auto &m : modules) names.push_back(m.c_str());
        error_sink e;
        const llmc_status_t s = quant().weight_qparams_store(h_, names.data(), names.size(), e.get());
        if (s == LLMC_ERR_UNSUPPORTED) return false;
        e.check(s, "weight qparams of '" + (modules.empty() ? std::string() : modules.front()) + "'");
        return true;
    }
    void quantization_enable(bool on) const {
        error_sink e;
        e.check(quant().quantization_enable(h_, on ? 1 : 0, e.get()), "quantization_enable");
    }

    // --- replay service
    void replay_capture(const std::string &module) const {
        error_sink e;
        e.check(replay().replay_capture(h_, module.c_str(), e.get()), "replay_capture '" + module + "'");
    }
    size_t replay_batch_count() const { return replay().replay_batch_count(h_); }
    // fn(batch_index, output) for every cached batch; overrides replace parameters temporarily.
    void replay_run(const std::string &module, const std::vector<llmc_named_tensor_t> &overrides,
                    const std::function<void(size_t, const DLTensor &)> &fn) const {
        error_sink e;
        auto tramp = [](void *ud, size_t batch, const DLTensor *out, llmc_error_sink_t *err) -> llmc_status_t {
            auto *f = static_cast<const std::function<void(size_t, const DLTensor &)> *>(ud);
            return barrier(err, [&] { (*f)(batch, *out); });
        };
        e.check(replay().replay_run(h_, module.c_str(), overrides.data(), overrides.size(), tramp,
                                    const_cast<void *>(static_cast<const void *>(&fn)), e.get()),
                "replay '" + module + "'");
    }

  private:
    const llmc_model_api_t &model() const { return *require(h_ ? h_->model : nullptr, "model"); }
    const llmc_quant_api_t &quant() const { return *require(h_ ? h_->quant : nullptr, "quantization"); }
    const llmc_replay_api_t &replay() const { return *require(h_ ? h_->replay : nullptr, "replay"); }
    template <class T> static const T *require(const T *t, const char *what) {
        if (t == nullptr) throw status_error(LLMC_ERR_UNSUPPORTED, std::string("host has no ") + what + " service");
        return t;
    }
    static llmc_status_t string_out(void *ud, const char *text) {
        *static_cast<std::string *>(ud) = text != nullptr ? text : "";
        return LLMC_OK;
    }
    static llmc_status_t hook_trampoline(void *ud, const llmc_hook_call_t *call, llmc_error_sink_t *err) {
        return barrier(err, [&] {
            hook_call c{call, call->module_name != nullptr ? call->module_name : ""};
            (*static_cast<hook_fn *>(ud))(c);
        });
    }
    const llmc_host_t *h_;
};

} // namespace llmc::sdk
