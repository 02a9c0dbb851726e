// Weight qparams through the host's quantization service, shared by the quantization plugins:
// observing weights (tensor_group partners q/k/v and gate/up share one global scale, as
// compressed-tensors' fused observers do), storing them as compressed-tensors buffers, and
// fake-quantizing with them. Every number comes from the host; this file only selects, slices
// and reshapes.
#pragma once

#include "quant_mixin.hpp"

#include <llmc/sdk/torch.hpp>

namespace llmc_plugin_common {

struct weight_qparams {
    at::Tensor scale;        // as the host's observer returns it
    at::Tensor zero_point;   // undefined when the host gives none
    at::Tensor global_scale; // tensor_group only
};

inline std::string strategy_of(const json &args) { return args.value("strategy", std::string("tensor")); }
inline bool is_group_like(const json &args) {
    const std::string s = strategy_of(args);
    return s == "group" || s == "tensor_group";
}

// Qparams of one tensor observed once as a weight ([out, in]); errors name `what`. `existing`
// is an observer that already holds input statistics (imatrix_mse), else a fresh one is made.
inline weight_qparams observe_weight(const llmc::sdk::host_ref &h, const json &args, const at::Tensor &w,
                                     const std::string &what = "weight", llmc::sdk::observer *existing = nullptr) {
    try {
        std::unique_ptr<llmc::sdk::observer> fresh;
        llmc::sdk::observer *obs = existing;
        if (obs == nullptr) {
            fresh = h.make_observer(args.dump(), LLMC_OBSERVE_WEIGHT);
            obs = fresh.get();
        }
        llmc::sdk::dl_view v(w);
        obs->observe(v.get());
        auto q = obs->qparams();
        return {llmc::sdk::to_tensor(std::move(q.scale)), llmc::sdk::to_tensor(std::move(q.zero_point)),
                llmc::sdk::to_tensor(std::move(q.global_scale))};
    } catch (const status_error &e) {
        throw status_error(e.code(), what + ": " + e.what());
    }
}

// The fused partners compressed-tensors gives one NVFP4 global scale (vLLM loads them as one).
inline std::string fused_key(const std::string &module) {
    const auto dot = module.rfind('.');
    const std::string leaf = module.substr(dot == std::string::npos ? 0 : dot + 1);
    const std::string parent = dot == std::string::npos ? "" : module.substr(0, dot);
    static const std::vector<std::pair<std::vector<std::string>, const char *>> sets = {
        {{"q_proj", "k_proj", "v_proj"}, "qkv"},
        {{"gate_proj", "up_proj"}, "gate_up"},
        {{"w1", "w3"}, "w13"},
        {{"q_a_proj", "kv_a_proj_with_mqa"}, "mla_a"}};
    for (const auto &[leaves, tag] : sets)
        for (const auto &l : leaves)
            if (l == leaf) return parent + "|" + tag;
    return "";
}
inline size_t fused_size(const std::string &key) {
    const std::string tag = key.substr(key.find('|') + 1);
    return tag == "qkv" ? 3 : 2;
}

// How `modules` (each with weight args in `args_of`; those without are left out) are observed:
// one by one, except complete tensor_group partner sets with equal args, observed together (rows
// concatenated), so that each keeps its own local scales and all share the set's global scale.
using args_lookup = std::function<const json *(const std::string &)>;
inline std::vector<std::vector<std::string>> observation_units(const std::vector<std::string> &modules,
                                                               const args_lookup &args_of) {
    std::vector<std::vector<std::string>> units;
    std::map<std::string, std::vector<std::string>> fused;
    for (const auto &m : modules) {
        const json *a = args_of(m);
        if (a == nullptr) continue;
        const std::string key = strategy_of(*a) == "tensor_group" ? fused_key(m) : "";
        if (!key.empty()) fused[key].push_back(m);
        else units.push_back({m});
    }
    for (const auto &[key, members] : fused) {
        bool together = members.size() == fused_size(key);
        for (const auto &m : members) together = together && *args_of(m) == *args_of(members.front());
        if (together) units.push_back(members);
        else
            for (const auto &m : members) units.push_back({m});
    }
    return units;
}

// The weight qparams the host stored for m (weight_qparams_store, or store_weight_qparams
// below): its buffers, which are what observe_weight returns in the weight's dtype, without a
// symmetric zero point (not stored; a zero one changes no quantized value).
inline weight_qparams stored_weight_qparams(const llmc::sdk::host_ref &h, const std::string &m) {
    weight_qparams q;
    for (const auto &name : h.tensor_names(m, LLMC_TENSOR_BUFFER)) {
        if (name == "weight_scale") q.scale = llmc::sdk::tensor_get(h, m, name);
        else if (name == "weight_zero_point") q.zero_point = llmc::sdk::tensor_get(h, m, name);
        else if (name == "weight_global_scale") q.global_scale = llmc::sdk::tensor_get(h, m, name);
    }
    if (!q.scale.defined()) throw status_error(LLMC_ERR_INTERNAL, m + ": the host stored no weight_scale");
    return q;
}

// Qparams of the original weights of `modules`, observed in observation_units. `observer_of`
// gives a module's imatrix observer, if any (partners read the same input: the first one's
// serves all). Units without one are observed and stored by the host where it can
// (weight_qparams_store, ABI 1.3: each weight read once from its file, a partner set without
// the concatenated copy made below), and their qparams read back from the module's buffers.
using observer_lookup = std::function<llmc::sdk::observer *(const std::string &)>;
inline std::map<std::string, weight_qparams> observe_weights(const llmc::sdk::host_ref &h,
                                                             const std::vector<std::string> &modules,
                                                             const args_lookup &args_of,
                                                             const observer_lookup &observer_of = {}) {
    auto existing = [&](const std::string &m) { return observer_of ? observer_of(m) : nullptr; };
    std::map<std::string, weight_qparams> out;
    for (const auto &members : observation_units(modules, args_of)) {
        if (!existing(members.front()) && h.weight_qparams_store(members)) {
            for (const auto &m : members) out[m] = stored_weight_qparams(h, m);
            continue;
        }
        if (members.size() == 1) {
            const std::string &m = members.front();
            out[m] = observe_weight(h, *args_of(m), llmc::sdk::tensor_get(h, m, "weight"), m, existing(m));
            continue;
        }
        std::vector<at::Tensor> ws;
        for (const auto &m : members) ws.push_back(llmc::sdk::tensor_get(h, m, "weight"));
        const weight_qparams all =
            observe_weight(h, *args_of(members.front()), at::cat(ws, 0), quantization_mixin::join(members, 3),
                           existing(members.front()));
        int64_t row = 0;
        for (size_t i = 0; i < members.size(); ++i) {
            const int64_t rows = ws[i].size(0);
            weight_qparams q;
            q.scale = all.scale.slice(0, row, row + rows).clone();
            if (all.zero_point.defined()) q.zero_point = all.zero_point.slice(0, row, row + rows).clone();
            q.global_scale = all.global_scale;
            out[members[i]] = q;
            row += rows;
        }
    }
    return out;
}

// The scale fake_quantize divides by: compressed-tensors uses scale / global_scale. The ABI's
// fake_quantize takes no global scale, so tensor_group passes this quotient (the host computes
// the same quotient with the same type promotion before dividing).
inline at::Tensor effective_scale(const weight_qparams &q) {
    return q.global_scale.defined() ? q.scale / q.global_scale : q.scale;
}

// The args with strategy channel: what GPTQ and the tensor_group path quantize slices with.
inline json channel_args(json args) {
    args["strategy"] = "channel";
    args["group_size"] = nullptr;
    args["block_structure"] = nullptr;
    args["actorder"] = nullptr;
    return args;
}

// dequantize(quantize(w)) with the module's qparams, through the host.
inline at::Tensor fake_quantize_weight(const llmc::sdk::host_ref &h, const json &args, const at::Tensor &w,
                                       const weight_qparams &q, const at::Tensor &g_idx = {}) {
    if (strategy_of(args) == "tensor_group") {
        // One row per group, one scale per row: elementwise the same as the grouped layout.
        const int64_t g = args.value("group_size", 0);
        const at::Tensor s = effective_scale(q).reshape({-1, 1});
        at::Tensor x = w, perm;
        if (g_idx.defined()) {
            perm = std::get<1>(at::sort(g_idx, /*stable=*/true, 0, false)); // columns by group
            x = x.index_select(1, perm);
        }
        llmc::sdk::dl_view xv(x.reshape({-1, g}).contiguous()), sv(s);
        std::optional<llmc::sdk::dl_view> zv;
        if (q.zero_point.defined()) zv.emplace(q.zero_point.reshape({-1, 1}));
        at::Tensor r = llmc::sdk::to_tensor(h.fake_quantize(channel_args(args).dump(), xv.get(), sv.get(),
                                                            zv ? &zv->get() : nullptr));
        r = r.reshape(w.sizes());
        if (perm.defined()) r = r.index_select(1, std::get<1>(at::sort(perm, true, 0, false)));
        return r;
    }
    llmc::sdk::dl_view xv(w), sv(q.scale);
    std::optional<llmc::sdk::dl_view> zv, gv;
    if (q.zero_point.defined()) zv.emplace(q.zero_point);
    if (g_idx.defined()) gv.emplace(g_idx);
    return llmc::sdk::to_tensor(
        h.fake_quantize(args.dump(), xv.get(), sv.get(), zv ? &zv->get() : nullptr, gv ? &gv->get() : nullptr));
}

// The qparam buffers compressed-tensors saves: weight_scale in the weight's dtype,
// weight_zero_point for asymmetric args only (symmetric zero points are never saved),
// weight_global_scale (float32, passed through the weight's dtype as llm-compressor does),
// weight_g_idx when given (actorder group).
inline void store_weight_qparams(const llmc::sdk::host_ref &h, const std::string &m, const json &args,
                                 const weight_qparams &q, at::ScalarType weight_dtype, const at::Tensor &g_idx = {}) {
    llmc::sdk::tensor_set(h, m, "weight_scale", q.scale.to(weight_dtype));
    if (!args.value("symmetric", true) && q.zero_point.defined())
        llmc::sdk::tensor_set(h, m, "weight_zero_point", q.zero_point);
    if (q.global_scale.defined())
        llmc::sdk::tensor_set(h, m, "weight_global_scale", q.global_scale.to(weight_dtype).to(at::kFloat));
    if (g_idx.defined()) llmc::sdk::tensor_set(h, m, "weight_g_idx", g_idx.to(at::kInt));
}

} // namespace llmc_plugin_common
