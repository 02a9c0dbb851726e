// Static activation calibration of the QuantizationMixin (llm-compressor's calibrate_input_hook,
// calibrate_output_hook and key/value hooks): host observers fed by forward hooks, and the
// resulting qparams stored under compressed-tensors' names when a subgraph ends.
#pragma once

#include "quant_mixin.hpp"

#include <llmc/sdk/torch.hpp>

#include <memory>

namespace llmc_plugin_common {

class activation_calibration {
  public:
    // Hooks for every targeted module with static (or "local") input activations or static
    // output activations, and key/value observers for kv_cache_scheme.
    void start(llmc::sdk::modifier &mod, const quantization_mixin &mx) {
        const auto &h = mod.host();
        for (const auto &m : mx.modules()) {
            const json &s = *mx.scheme_of(m);
            if (present(s, "input_activations") && !is_dynamic_true(s["input_activations"]))
                hook(mod, add(h, m, "input", s["input_activations"]), LLMC_HOOK_FORWARD_PRE, m);
            if (present(s, "output_activations") && s["output_activations"].value("dynamic", json(false)) == json(false))
                hook(mod, add(h, m, "output", s["output_activations"]), LLMC_HOOK_FORWARD, m);
        }
        if (!mx.kv_args().is_null()) start_kv(mod, mx);
    }

    // Stores the calibrated qparams of the modules of this subgraph.
    void write(const llmc::sdk::host_ref &h, const std::vector<std::string> &modules) {
        for (const auto &m : modules) {
            auto range = by_module_.equal_range(m);
            for (auto it = range.first; it != range.second; ++it) store(h, *it->second);
        }
    }

    // Removes the hooks and stores what no subgraph covered (modules outside every layer).
    void finish(const llmc::sdk::host_ref &h) {
        for (uint64_t id : hooks_) h.hook_remove(id);
        hooks_.clear();
        for (auto &s : slots_) store(h, *s);
        slots_.clear();
        by_module_.clear();
        kv_.clear();
    }

  private:
    struct slot {
        std::string module, prefix; // "input" -> input_scale, "k" -> k_scale
        json args;
        std::unique_ptr<llmc::sdk::observer> obs;
        bool seen = false, stored = false;
    };
    struct kv_state {
        at::Tensor cos, sin; // of the attention's current forward (copied: hook inputs are borrowed)
        slot *k = nullptr;
    };

    slot *add(const llmc::sdk::host_ref &h, const std::string &module, const std::string &prefix, const json &args) {
        auto s = std::make_unique<slot>();
        s->module = module;
        s->prefix = prefix;
        s->args = args;
        s->obs = h.make_observer(args.dump(), LLMC_OBSERVE_ACTIVATION);
        slots_.push_back(std::move(s));
        by_module_.emplace(module, slots_.back().get());
        return slots_.back().get();
    }

    void hook(llmc::sdk::modifier &mod, slot *s, llmc_hook_kind_t kind, const std::string &on) {
        hooks_.push_back(mod.add_hook(on, kind, [s, kind](const llmc::sdk::hook_call &c) {
            const DLTensor *x = kind == LLMC_HOOK_FORWARD ? c.output() : &c.input(0);
            if (x == nullptr) return;
            s->obs->observe(*x);
            s->seen = true;
        }));
    }

    // Keys are observed as the cache holds them: after k_norm (when the model has one) and
    // rotary embedding; values as v_proj returns them. Only per-tensor kv scales can be
    // observed through ABI 1.0 (its observers know weights and [..., hidden] activations).
    void start_kv(llmc::sdk::modifier &mod, const quantization_mixin &mx) {
        const auto &h = mod.host();
        const std::string strategy = mx.kv_args().value("strategy", std::string("tensor"));
        if (strategy != "tensor")
            throw status_error(LLMC_ERR_UNSUPPORTED, "kv_cache_scheme strategy '" + strategy +
                                                         "' is not supported: ABI 1.0 observers have no attention-"
                                                         "head role, only strategy 'tensor' can be calibrated");
        for (const auto &attn : mx.attention_modules()) {
            auto st = std::make_shared<kv_state>();
            kv_.push_back(st);
            hooks_.push_back(mod.add_hook(attn, LLMC_HOOK_FORWARD_PRE, [st](const llmc::sdk::hook_call &c) {
                st->cos = llmc::sdk::borrow_tensor(c.input(1)).clone();
                st->sin = llmc::sdk::borrow_tensor(c.input(2)).clone();
            }));
            st->k = add(h, attn, "k", mx.kv_args());
            bool has_norm = true;
            try {
                h.module(attn + ".k_norm");
            } catch (const status_error &) {
                has_norm = false;
            }
            slot *ks = st->k;
            hooks_.push_back(mod.add_hook(attn + (has_norm ? ".k_norm" : ".k_proj"), LLMC_HOOK_FORWARD,
                                          [st, ks](const llmc::sdk::hook_call &c) {
                                              if (c.output() == nullptr || !st->cos.defined()) return;
                                              at::Tensor k = rotate(llmc::sdk::borrow_tensor(*c.output()), *st);
                                              llmc::sdk::dl_view v(k);
                                              ks->obs->observe(v.get());
                                              ks->seen = true;
                                          }));
            hook(mod, add(h, attn, "v", mx.kv_args()), LLMC_HOOK_FORWARD, attn + ".v_proj");
        }
    }

    // transformers' apply_rotary_pos_emb on keys [b, s, kv_heads * head_dim] or
    // [b, s, kv_heads, head_dim] with cos/sin [s, head_dim] or [b, s, head_dim].
    static at::Tensor rotate(const at::Tensor &out, const kv_state &st) {
        const int64_t hd = st.cos.size(-1), b = out.size(0), s = out.size(1);
        at::Tensor k = out.reshape({b, s, -1, hd}).transpose(1, 2);
        at::Tensor cos = st.cos, sin = st.sin;
        if (cos.dim() == 3) {
            cos = cos.unsqueeze(1);
            sin = sin.unsqueeze(1);
        }
        const int64_t half = hd / 2;
        at::Tensor rot = at::cat({-k.narrow(-1, half, half), k.narrow(-1, 0, half)}, -1);
        return (k * cos + rot * sin).transpose(1, 2).reshape({b, s, -1});
    }

    // input_scale / input_zero_point (asymmetric) / input_global_scale; "local" activations
    // keep only the global scale (their local scales are computed at runtime).
    static void store(const llmc::sdk::host_ref &h, slot &s) {
        if (s.stored) return;
        s.stored = true;
        if (!s.seen) {
            h.warn("no calibration data reached '" + s.module + "': " + s.prefix + " qparams not set");
            return;
        }
        auto q = s.obs->qparams();
        at::Tensor scale = llmc::sdk::to_tensor(std::move(q.scale));
        at::Tensor zp = llmc::sdk::to_tensor(std::move(q.zero_point));
        at::Tensor gs = llmc::sdk::to_tensor(std::move(q.global_scale));
        if (!is_dynamic_local(s.args)) {
            llmc::sdk::tensor_set(h, s.module, s.prefix + "_scale", scale);
            if (!s.args.value("symmetric", true) && zp.defined())
                llmc::sdk::tensor_set(h, s.module, s.prefix + "_zero_point", zp);
        }
        if (gs.defined()) llmc::sdk::tensor_set(h, s.module, s.prefix + "_global_scale", gs);
        s.obs.reset();
    }

    std::vector<std::unique_ptr<slot>> slots_;
    std::multimap<std::string, slot *> by_module_;
    std::vector<std::shared_ptr<kv_state>> kv_;
    std::vector<uint64_t> hooks_;
};

} // namespace llmc_plugin_common
