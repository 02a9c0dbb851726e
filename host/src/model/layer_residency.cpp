// Decoder layers on and off memory: the sequential pipeline holds one layer at a time, spilling a
// changed layer to a scratch file and releasing it, so peak memory follows one layer, not the model.
#include "model/causal_lm.h"
#include "util/error.h"

#include <set>

namespace llmc {

std::vector<std::pair<std::string, at::Tensor>> causal_lm::own_state(module &mod, bool include_tied) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    const std::string prefix = mod.name().empty() ? "" : mod.name() + ".";
    // Registration order as torch has it: weight before bias, then the rest.
    std::vector<std::string> keys;
    if (mod.params.count("weight")) keys.push_back("weight");
    if (mod.params.count("bias")) keys.push_back("bias");
    for (const auto &kv : mod.params)
        if (kv.first != "weight" && kv.first != "bias") keys.push_back(kv.first);
    for (const auto &k : keys) {
        if (!include_tied && &mod == lm_head_ && k == "weight" && cfg_.tie_word_embeddings) continue;
        out.emplace_back(prefix + k, mod.params.at(k));
    }
    for (const auto &[k, t] : mod.buffers) out.emplace_back(prefix + k, t);
    return out;
}

std::vector<std::pair<std::string, at::Tensor>> causal_lm::module_state(module &root, bool include_tied) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    root.walk([&](module &mod) {
        for (auto &kv : own_state(mod, include_tied)) out.push_back(std::move(kv));
    });
    return out;
}

at::Tensor causal_lm::read_param(const std::string &name) {
    if (decompress_) {
        at::Tensor t = decompress_(name, dtype_);
        if (t.defined()) return t;
    }
    // A layer is read once per onload and dropped on release: the mapped bytes serve as they are.
    return source_->view_and_drop(name, dtype_);
}

void causal_lm::layer_onload(size_t i) {
    module &l = layer(i);
    if (resident_[i]) return;
    const std::string prefix = l.name() + ".";
    if (spilled_[i]) {
        // The spill holds parameters and buffers: a name that is not a parameter is a buffer of
        // the module named by everything before its last dot.
        const safetensors_file &f = *spilled_[i];
        std::set<std::string> seen;
        l.walk([&](module &m) {
            for (auto &[k, t] : m.params) {
                const std::string n = m.name() + "." + k;
                if (!f.contains(n)) fail("layer {}: spill {} lacks '{}'", i, f.path(), n);
                t = f.copy_and_drop(n, dtype_);
                seen.insert(n);
            }
        });
        for (const auto &n : f.names()) {
            if (seen.count(n)) continue;
            const auto dot = n.rfind('.');
            module *m = find(n.substr(0, dot));
            if (m == nullptr) fail("layer {}: spill {} holds '{}' of no module", i, f.path(), n);
            m->buffers[n.substr(dot + 1)] = f.copy_and_drop(n, f.info(n).scalar_type);
        }
    } else {
        if (!source_) fail("layer {} is not in memory and the model has no checkpoint to read it from", i);
        l.walk([&](module &m) {
            for (auto &[k, t] : m.params) t = read_param(m.name() + "." + k);
            if (activation_quant_) activation_quant_(m);
        });
    }
    resident_[i] = 1;
}

void causal_lm::layers_onload_all() {
    for (size_t i = 0; i < layers_.size(); ++i) layer_onload(i);
}

void causal_lm::layer_release(size_t i) {
    module &l = layer(i);
    if (!resident_[i]) return;
    if (!spilled_[i] && !source_) fail("layer {} cannot be released: a random model's layers live only in memory", i);
    l.walk([&](module &m) {
        for (auto &[k, t] : m.params)
            t = at::empty(t.sizes(), at::TensorOptions().device(at::kMeta).dtype(t.scalar_type()));
        m.buffers.clear();
    });
    resident_[i] = 0;
}

void causal_lm::layer_spill(size_t i, const std::string &path) {
    if (!resident_[i]) fail("layer {} cannot be spilled: it is not in memory", i);
    {
        safetensors_writer w(path);
        for (const auto &[name, t] : module_state(layer(i))) w.add(name, t);
        w.finish();
    }
    spilled_[i] = std::make_shared<safetensors_file>(path);
}

} // namespace llmc
