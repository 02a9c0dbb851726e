#include "session/session.h"

#include "model/layers.h"
#include "plugin/host_sink.h"
#include "quant/forward.h"
#include "quant/qparams.h"
#include "session/module_match.h"
#include "util/error.h"
#include "util/runtime.h"

#include <ATen/DLConvertor.h>

#include <regex>

namespace llmc {

session::session(causal_lm &model) : model_(model) {
    modules_ = model_.modules();
    std::map<const module *, size_t> pos;
    for (size_t i = 0; i < modules_.size(); ++i) {
        pos[modules_[i]] = i;
        index_[modules_[i]->name()] = i;
    }
    static const std::regex layer_re(R"(^model\.layers\.(\d+)(\.|$))");
    for (size_t i = 0; i < modules_.size(); ++i) {
        const module *p = modules_[i]->parent();
        parents_.push_back(p == nullptr ? -1 : static_cast<int64_t>(pos.at(p)));
        std::smatch m;
        const std::string &n = modules_[i]->name();
        layers_.push_back(std::regex_search(n, m, layer_re) ? std::stoll(m[1].str()) : -1);
    }
}

session::~session() {
    // Hooks hold plugin function pointers: take them off the model before the plugins' instances go.
    for (auto &kv : hooks_) kv.second.mod->remove_hook(kv.second.module_hook);
    hooks_.clear();
    for (auto &kv : captures_) module_at(kv.first).remove_hook(kv.second.module_hook);
    captures_.clear();
    modifiers_.clear();
}

int64_t session::module_index(const std::string &name) const {
    auto it = index_.find(name);
    return it == index_.end() ? -1 : static_cast<int64_t>(it->second);
}

module &session::module_named(const std::string &name) const {
    int64_t i = module_index(name);
    if (i < 0) fail("no module named '{}' in the model", name);
    return *modules_[i];
}

module &session::module_resident(size_t i) {
    const int64_t layer = module_layer(i);
    if (layer >= 0 && !model_.layer_resident(static_cast<size_t>(layer))) model_.layer_onload(static_cast<size_t>(layer));
    return module_at(i);
}

std::vector<size_t> session::match(const std::vector<std::string> &targets,
                                   const std::vector<std::string> &ignore) const {
    module_matcher want(targets), skip(ignore);
    std::vector<size_t> out;
    for (size_t i = 0; i < modules_.size(); ++i) {
        const module &m = *modules_[i];
        if (want(m.name(), m.class_name()) && !skip(m.name(), m.class_name())) out.push_back(i);
    }
    return out;
}

modifier_instance &session::add_modifier(std::shared_ptr<plugin_library> lib, const nlohmann::ordered_json &fields,
                                         const std::string &where) {
    modifiers_.push_back(std::make_unique<modifier_instance>(std::move(lib), fields, where, *this, modifiers_.size()));
    return *modifiers_.back();
}

void session::initialize() {
    for (auto &m : modifiers_) m->initialize();
}

void session::fire(const llmc_event_t &ev, modifier_instance *only) {
    for (auto &m : modifiers_)
        if (only == nullptr || only == m.get()) m->dispatch(ev);
}

void session::finalize() {
    for (auto &m : modifiers_) m->finalize();
}

// ---- hooks

namespace {
// DLPack views of a hook's tensors for the duration of one plugin call.
struct dl_views {
    std::vector<DLManagedTensor *> owned;
    std::vector<const DLTensor *> ptrs;
    const DLTensor *add(const at::Tensor &t) {
        DLManagedTensor *m = at::toDLPack(t);
        owned.push_back(m);
        return &m->dl_tensor;
    }
    ~dl_views() {
        for (auto *m : owned) m->deleter(m);
    }
};
} // namespace

uint64_t session::hook_add(size_t owner, size_t module_index, uint32_t kind, llmc_hook_fn fn, void *user_data,
                           const std::string &plugin_name) {
    if (kind != LLMC_HOOK_FORWARD_PRE && kind != LLMC_HOOK_FORWARD) fail("unknown hook kind {}", kind);
    module &m = module_at(module_index);
    const uint64_t id = next_hook_++;
    auto invoke = [=, &m](const std::vector<at::Tensor> &inputs, const at::Tensor *output) {
        if (hooks_only_ && *hooks_only_ != owner) return;
        dl_views v;
        for (const auto &t : inputs) v.ptrs.push_back(t.defined() ? v.add(t) : nullptr);
        llmc_hook_call_t call{};
        call.struct_size = sizeof(call);
        call.kind = kind;
        call.module_name = m.name().c_str();
        call.module_index = module_index;
        call.inputs = v.ptrs.data();
        call.input_count = v.ptrs.size();
        call.output = output != nullptr ? v.add(*output) : nullptr;
        host_sink sink;
        llmc_status_t st = fn(user_data, &call, sink.get());
        if (st != LLMC_OK) fail("{} hook on '{}': {}", plugin_name, m.name(), sink.describe(st));
    };
    uint64_t mh = kind == LLMC_HOOK_FORWARD_PRE
                      ? m.add_pre_hook([invoke](module &, const std::vector<at::Tensor> &in) { invoke(in, nullptr); })
                      : m.add_post_hook([invoke](module &, const std::vector<at::Tensor> &in, const at::Tensor &out) {
                            invoke(in, &out);
                        });
    hooks_[id] = {owner, &m, mh};
    return id;
}

bool session::hook_remove(size_t owner, uint64_t id) {
    auto it = hooks_.find(id);
    if (it == hooks_.end() || it->second.owner != owner) return false;
    it->second.mod->remove_hook(it->second.module_hook);
    hooks_.erase(it);
    return true;
}

void session::hooks_remove_owned(size_t owner) {
    for (auto it = captures_.begin(); it != captures_.end();) {
        it->second.owners.erase(owner);
        if (it->second.owners.empty()) {
            module_at(it->first).remove_hook(it->second.module_hook);
            it = captures_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto it = hooks_.begin(); it != hooks_.end();) {
        if (it->second.owner == owner) {
            it->second.mod->remove_hook(it->second.module_hook);
            it = hooks_.erase(it);
        } else {
            ++it;
        }
    }
}

// ---- replay

void session::replay_capture(size_t owner, size_t module_index) {
    auto it = captures_.find(module_index);
    if (it != captures_.end()) {
        it->second.owners.insert(owner);
        return;
    }
    module &m = module_at(module_index);
    // Host-internal hook: runs with the same switch as plugin hooks, i.e. in calibration passes.
    uint64_t id = m.add_pre_hook([this, module_index](module &mod, const std::vector<at::Tensor> &in) {
        if (hooks_only_ && captures_.at(module_index).owners.count(*hooks_only_) == 0) return;
        std::vector<at::Tensor> copy;
        for (const auto &t : in) copy.push_back(t.defined() ? t.detach().clone() : t);
        replay_inputs_[mod.name()].push_back(std::move(copy));
    });
    captures_[module_index] = {id, {owner}};
}

void session::replay_begin_subgraph() { replay_inputs_.clear(); }

const std::vector<std::vector<at::Tensor>> *session::replay_inputs(const std::string &module) const {
    auto it = replay_inputs_.find(module);
    return it == replay_inputs_.end() ? nullptr : &it->second;
}

size_t session::replay_batch_count() const {
    size_t n = 0;
    for (const auto &kv : replay_inputs_) n = std::max(n, kv.second.size());
    return n;
}

// ---- schemes

void session::scheme_attach(size_t owner, size_t module_index, const std::string &canonical_json) {
    schemes_[module_at(module_index).name()] = {owner, canonical_json};
}

const std::string *session::scheme_of(const std::string &module) const {
    auto it = schemes_.find(module);
    return it == schemes_.end() ? nullptr : &it->second.json;
}

void session::quantization_enable(size_t owner, bool on) {
    for (auto &kv : schemes_) {
        if (kv.second.owner != owner) continue;
        // The module object, not its weights: a released layer stays released (the forward reads
        // the qparam buffers when it runs, after the layer is back).
        module &m = module_at(static_cast<size_t>(module_index(kv.first)));
        // Linear modules fake-quantize weights and activations; an attention module's scheme
        // carries the kv-cache args as its input activations (as the exporter reads it).
        const bool attn = dynamic_cast<attention *>(&m) != nullptr;
        if (m.class_name() != "Linear" && !attn) continue;
        const quant::quant_scheme scheme = quant::scheme_from_json(nlohmann::json::parse(kv.second.json), kv.first);
        if (attn) {
            const quant::quant_args *kv_args = scheme.input_activations ? &*scheme.input_activations : nullptr;
            quant::forward_kv_quantization_set(m, on ? kv_args : nullptr);
        } else {
            quant::forward_quantization_set(m, on ? &scheme : nullptr);
        }
    }
}

void session::weight_qparams_defer(size_t module_index, const quant::quant_args &weights) {
    module &m = module_resident(module_index);
    for (const char *n : {"weight_scale", "weight_zero_point", "weight_global_scale"}) m.buffers.erase(n);
    deferred_[m.name()] = weights;
}

void session::weight_qparams_settle(size_t module_index) {
    auto it = deferred_.find(module_at(module_index).name());
    if (it == deferred_.end()) return;
    const quant::quant_args args = it->second;
    deferred_.erase(it);
    module &m = module_resident(module_index);
    const auto w = m.params.find("weight");
    if (w == m.params.end() || !w->second.defined()) return; // nothing to observe: nothing to store
    // What the plugin's own observe-and-store gives: a fresh observer's qparams, the scale in the
    // weight's dtype, a zero point only for asymmetric args.
    const quant::qparams qp = quant::qparams_observe(args, w->second, quant::observed_role::weight);
    m.buffers["weight_scale"] = qp.scale.to(w->second.scalar_type());
    if (!args.symmetric && qp.zero_point.defined()) m.buffers["weight_zero_point"] = qp.zero_point;
}

void session::weight_qparams_settle_within(size_t i) {
    const std::string root = module_at(i).name();
    std::vector<std::string> inside;
    for (const auto &kv : deferred_)
        if (root.empty() || kv.first == root || kv.first.rfind(root + ".", 0) == 0) inside.push_back(kv.first);
    for (const auto &name : inside) weight_qparams_settle(static_cast<size_t>(module_index(name)));
}

std::map<std::string, std::string> session::schemes() const {
    std::map<std::string, std::string> out;
    for (const auto &kv : schemes_) out[kv.first] = kv.second.json;
    return out;
}

bool session::cancelled() const { return cancelled_.load() || runtime_cancel_flag().load(); }

llmc_event_t event_make(uint32_t type) {
    llmc_event_t ev{};
    ev.struct_size = sizeof(ev);
    ev.type = type;
    ev.invocations_per_step = 1;
    return ev;
}

} // namespace llmc
