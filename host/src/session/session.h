// The session: the model, the modifier instances in recipe order, and the state behind the host
// services (hooks, replay captures, attached schemes, cancellation). Pipelines drive it.
#pragma once

#include "model/causal_lm.h"
#include "quant/args.h"
#include "session/modifier_instance.h"

#include <llmc/llmc.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace llmc {

class plugin_library;

class session {
  public:
    explicit session(causal_lm &model);
    ~session();
    session(const session &) = delete;
    session &operator=(const session &) = delete;

    causal_lm &model() { return model_; }

    // --- module view (indices in named_modules order, the root first)
    size_t module_count() const { return modules_.size(); }
    module &module_at(size_t i) const { return *modules_.at(i); }
    int64_t module_layer(size_t i) const { return layers_.at(i); }
    int64_t module_parent(size_t i) const { return parents_.at(i); }
    // -1 when there is no such module.
    int64_t module_index(const std::string &name) const;
    module &module_named(const std::string &name) const; // throws naming the module
    // The module, with its decoder layer brought back into memory if the pipeline released it
    // (the layer then stays resident: touching finished layers costs memory).
    module &module_resident(size_t i);
    // llm-compressor's match_named_modules(targets, ignore), in model order.
    std::vector<size_t> match(const std::vector<std::string> &targets, const std::vector<std::string> &ignore) const;

    // --- modifiers
    modifier_instance &add_modifier(std::shared_ptr<plugin_library> lib, const nlohmann::ordered_json &fields,
                                    const std::string &where);
    const std::vector<std::unique_ptr<modifier_instance>> &modifiers() const { return modifiers_; }
    void initialize();
    // Dispatches to every modifier, or only to `only` (the independent pipeline's current one).
    void fire(const llmc_event_t &ev, modifier_instance *only = nullptr);
    void finalize();

    // --- hooks (plugin-owned, removed when the owner finalizes)
    uint64_t hook_add(size_t owner, size_t module_index, uint32_t kind, llmc_hook_fn fn, void *user_data,
                      const std::string &plugin_name);
    bool hook_remove(size_t owner, uint64_t id);
    void hooks_remove_owned(size_t owner);
    size_t hook_count() const { return hooks_.size(); }
    // While set, only this owner's hooks (and captures) run: the independent pipeline calibrates one
    // modifier at a time, as llm-compressor's disable_hooks(keep=...).
    void hooks_only(std::optional<size_t> owner) { hooks_only_ = owner; }

    // --- replay: inputs captured per module during the current subgraph's calibration pass
    void replay_capture(size_t owner, size_t module_index);
    void replay_begin_subgraph(); // drops the previous subgraph's captures
    void replay_set_open(bool open) { replay_open_ = open; }
    bool replay_open() const { return replay_open_; }
    const std::vector<std::vector<at::Tensor>> *replay_inputs(const std::string &module) const;
    size_t replay_batch_count() const;

    // --- quantization schemes attached by modifiers
    void scheme_attach(size_t owner, size_t module_index, const std::string &canonical_json);
    const std::string *scheme_of(const std::string &module) const;
    void quantization_enable(size_t owner, bool on);
    // Weight qparams left to the host (quant.weight_qparams_defer): the module's stored weight
    // qparams are dropped and `weights` recorded; the exporter and the fake-quantized forward
    // compute them from the weight when they find none. Settling computes and stores them as
    // the plugin would have, before a plugin touches the module's tensors or its scheme.
    void weight_qparams_defer(size_t module_index, const quant::quant_args &weights);
    void weight_qparams_settle(size_t module_index);
    // The module's and those of every module inside it.
    void weight_qparams_settle_within(size_t module_index);

    // --- per-module figures plugins report (loss, time, ...), for the run report
    void report_add(const std::string &module, const std::string &key, double value) { reports_[module][key] = value; }
    const std::map<std::string, std::map<std::string, double>> &reports() const { return reports_; }
    // The canonical scheme JSON of every module that has one.
    std::map<std::string, std::string> schemes() const;

    // --- cancellation (set from a signal handler: lock-free)
    void cancel() { cancelled_.store(true); }
    bool cancelled() const;

  private:
    struct hook_record {
        size_t owner;
        module *mod;
        uint64_t module_hook;
    };
    struct scheme_record {
        size_t owner;
        std::string json;
    };

    causal_lm &model_;
    std::vector<module *> modules_;
    std::vector<int64_t> layers_, parents_;
    std::map<std::string, size_t> index_;
    std::vector<std::unique_ptr<modifier_instance>> modifiers_;
    std::map<uint64_t, hook_record> hooks_;
    uint64_t next_hook_ = 1;
    struct capture_record {
        uint64_t module_hook;
        std::set<size_t> owners;
    };
    std::map<size_t, capture_record> captures_;
    std::optional<size_t> hooks_only_;
    std::map<std::string, std::vector<std::vector<at::Tensor>>> replay_inputs_;
    bool replay_open_ = false;
    std::map<std::string, scheme_record> schemes_;
    std::map<std::string, quant::quant_args> deferred_;
    std::atomic<bool> cancelled_{false};
    std::map<std::string, std::map<std::string, double>> reports_;
};

// An event with the session's conventions (oneshot: index 0).
llmc_event_t event_make(uint32_t type);

} // namespace llmc
