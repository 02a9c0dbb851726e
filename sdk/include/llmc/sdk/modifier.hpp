// Writing a modifier in C++: subclass llmc::sdk::modifier, bind parameters in declare(),
// override the hooks you need, and export it with LLMC_DECLARE_MODIFIER. Every trampoline is an
// exception barrier, and the lifecycle order is checked here as well as in the host.
#pragma once

#include <llmc/llmc.h>
#include <llmc/sdk/errors.hpp>
#include <llmc/sdk/host.hpp>
#include <llmc/sdk/params.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace llmc::sdk {

// A read-only face over the host's event (valid for the callback only).
struct event {
    const llmc_event_t *raw;
    uint32_t type() const { return raw->type; }
    double current_index() const { return raw->current_index; }
    std::vector<std::string> modules() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < raw->module_count; ++i) out.emplace_back(raw->module_names[i]);
        return out;
    }
};

class modifier {
  public:
    virtual ~modifier() = default;

    // Bind parameters: p.add("block_size", block_size_).minimum(1). Called once per instance,
    // before the recipe's fields are applied (and once on a scratch instance to publish the
    // descriptor's params_json, so constructors must not call the host).
    virtual void declare(param_set &p) {}
    // Cross-field validation after all fields are set; throw to reject.
    virtual void validate() {}
    // Default: the descriptor's LLMC_MODIFIER_REQUIRES_DATA flag.
    virtual bool requires_calibration_data() const { return requires_data_flag_; }

    virtual bool on_initialize() = 0;
    virtual bool on_finalize() { return true; }
    virtual void on_event(const event &) {}
    virtual void on_start(const event &) {}
    virtual void on_update(const event &) {}
    virtual void on_end(const event &) {}
    virtual void on_calibration_start(const event &) {}
    virtual void on_sequential_epoch_end(const event &) {}
    virtual void on_calibration_end(const event &) {}

    const host_ref &host() const { return host_; }

    // llm-compressor's common Modifier fields (start/end drive the training lifecycle; the host
    // dispatches on them). Declared for every modifier.
    std::optional<int64_t> index;
    std::optional<std::string> group;
    std::optional<double> start, end, update;
    std::optional<bool> requires_calibration_data_field;

    // Registers a forward hook whose closure this modifier owns (removed by the host at finalize).
    uint64_t add_hook(const std::string &module, llmc_hook_kind_t kind, hook_fn fn) {
        return host_.hook_add(module, kind, std::move(fn), hooks_);
    }

  private:
    template <class T> friend struct modifier_glue;
    void declare_common(param_set &p) {
        p.add("index", index, "position in its group (llm-compressor bookkeeping)");
        p.add("group", group, "group name (llm-compressor bookkeeping)");
        p.add("start", start, "training epoch at which the modifier starts (on_start)");
        p.add("end", end, "training epoch at which the modifier ends (on_end)");
        p.add("update", update, "update interval in epochs");
        p.add("requires_calibration_data", requires_calibration_data_field,
              "as saved by llm-compressor; informational");
    }
    host_ref host_;
    bool requires_data_flag_ = false;
    std::vector<std::unique_ptr<hook_fn>> hooks_;
};

enum class instance_state { created, initialized, finalized };

struct instance {
    std::unique_ptr<modifier> mod;
    param_set params;
    instance_state state = instance_state::created;
};

template <class T> struct modifier_glue {
    static instance *self(llmc_modifier_t *m) { return reinterpret_cast<instance *>(m); }

    static std::string params_json() {
        T scratch;
        param_set p;
        scratch.declare_common(p);
        scratch.declare(p);
        return p.schema().dump();
    }

    static llmc_status_t create(const llmc_host_t *host, const char *params, llmc_modifier_t **out,
                                llmc_error_sink_t *err) noexcept {
        if (out == nullptr) {
            report(err, LLMC_ERR_INVALID_ARG, "out is NULL");
            return LLMC_ERR_INVALID_ARG;
        }
        *out = nullptr;
        return barrier(err, [&] {
            auto inst = std::make_unique<instance>();
            inst->mod = std::make_unique<T>();
            inst->mod->host_ = host_ref(host);
            inst->mod->requires_data_flag_ = (descriptor_flags() & LLMC_MODIFIER_REQUIRES_DATA) != 0;
            inst->mod->declare_common(inst->params);
            inst->mod->declare(inst->params);
            json fields = json::object();
            if (params != nullptr && *params != '\0') {
                fields = json::parse(params, nullptr, false);
                if (fields.is_discarded()) throw status_error(LLMC_ERR_INVALID_ARG, "parameters are not valid JSON");
            }
            inst->params.apply(fields);
            inst->mod->validate();
            *out = reinterpret_cast<llmc_modifier_t *>(inst.release());
        });
    }
    static void destroy(llmc_modifier_t *m) noexcept {
        try {
            delete self(m);
        } catch (...) {
            // a destructor that throws cannot be reported: swallow rather than unwind into the host
        }
    }
    static int requires_data(llmc_modifier_t *m) noexcept {
        try {
            return self(m)->mod->requires_calibration_data() ? 1 : 0;
        } catch (...) {
            return 1;
        }
    }
    static llmc_status_t on_initialize(llmc_modifier_t *m, llmc_error_sink_t *err) noexcept {
        return barrier(err, [&] {
            instance *i = self(m);
            if (i->state != instance_state::created)
                throw status_error(LLMC_ERR_BAD_STATE, "on_initialize called twice or after finalize");
            if (!i->mod->on_initialize()) throw status_error(LLMC_ERR_UNKNOWN, "on_initialize returned false");
            i->state = instance_state::initialized;
        });
    }
    static llmc_status_t on_finalize(llmc_modifier_t *m, llmc_error_sink_t *err) noexcept {
        return barrier(err, [&] {
            instance *i = self(m);
            if (i->state == instance_state::finalized) return; // finalize twice is a no-op
            if (i->state != instance_state::initialized)
                throw status_error(LLMC_ERR_BAD_STATE, "on_finalize before on_initialize");
            i->state = instance_state::finalized;
            if (!i->mod->on_finalize()) throw status_error(LLMC_ERR_UNKNOWN, "on_finalize returned false");
        });
    }
    template <void (modifier::*Hook)(const event &)>
    static llmc_status_t on_hook(llmc_modifier_t *m, const llmc_event_t *ev, llmc_error_sink_t *err) noexcept {
        return barrier(err, [&] {
            instance *i = self(m);
            if (i->state != instance_state::initialized)
                throw status_error(LLMC_ERR_BAD_STATE, "event outside initialize..finalize");
            if (ev == nullptr) throw status_error(LLMC_ERR_INVALID_ARG, "event is NULL");
            (i->mod.get()->*Hook)(event{ev});
        });
    }

    static uint32_t &descriptor_flags() {
        static uint32_t flags = 0;
        return flags;
    }

    static const llmc_modifier_descriptor_t *descriptor(const char *name, const char *version,
                                                        const char *description, uint32_t flags) noexcept {
        try {
            static const std::string params = params_json();
            static const llmc_modifier_descriptor_t d = [&] {
                descriptor_flags() = flags;
                llmc_modifier_descriptor_t x{};
                x.struct_size = sizeof(x);
                x.abi_version = LLMC_ABI_VERSION_INIT;
                x.name = name;
                x.version = version;
                x.description = description;
                x.params_json = params.c_str();
                x.flags = flags;
                x.create = &create;
                x.destroy = &destroy;
                x.requires_calibration_data = &requires_data;
                x.on_initialize = &on_initialize;
                x.on_finalize = &on_finalize;
                x.on_event = &on_hook<&modifier::on_event>;
                x.on_start = &on_hook<&modifier::on_start>;
                x.on_update = &on_hook<&modifier::on_update>;
                x.on_end = &on_hook<&modifier::on_end>;
                x.on_calibration_start = &on_hook<&modifier::on_calibration_start>;
                x.on_sequential_epoch_end = &on_hook<&modifier::on_sequential_epoch_end>;
                x.on_calibration_end = &on_hook<&modifier::on_calibration_end>;
                return x;
            }();
            return &d;
        } catch (...) {
            return nullptr; // a broken declare(): the host reports "entry returned NULL"
        }
    }
};

} // namespace llmc::sdk

// Exports the one entry symbol for modifier class CLASS (default-constructible).
// FLAGS: 0 or LLMC_MODIFIER_REQUIRES_DATA.
#define LLMC_DECLARE_MODIFIER(CLASS, NAME, VERSION, DESCRIPTION, FLAGS)                                     \
    extern "C" LLMC_EXPORT const llmc_modifier_descriptor_t *llmc_plugin_entry(void) {                    \
        return ::llmc::sdk::modifier_glue<CLASS>::descriptor(NAME, VERSION, DESCRIPTION, FLAGS);          \
    }
