// imatrix_mse weight observers (llm-compressor's IMatrixMSEObserver.attach): one host observer per
// targeted module whose weight args name it, fed the module's inputs by a forward pre-hook during
// calibration; the weight is observed through the same observer, so its MSE search weighs each
// column by the mean x² of its input channel. The statistics live in the host.
#pragma once

#include "quant_mixin.hpp"

#include <llmc/sdk/modifier.hpp>
#include <llmc/sdk/torch.hpp>

#include <map>
#include <memory>

namespace llmc_plugin_common {

inline bool uses_imatrix(const json &scheme) {
    return present(scheme, "weights") && scheme["weights"].value("observer", json()) == json("imatrix_mse");
}

class imatrix_inputs {
  public:
    void start(llmc::sdk::modifier &mod, const quantization_mixin &mx) {
        const auto &h = mod.host();
        for (const auto &m : mx.modules()) {
            const json &s = *mx.scheme_of(m);
            if (!uses_imatrix(s)) continue;
            auto &obs = observers_[m];
            obs = h.make_observer(s["weights"].dump(), LLMC_OBSERVE_WEIGHT);
            llmc::sdk::observer *o = obs.get();
            hooks_.push_back(mod.add_hook(m, LLMC_HOOK_FORWARD_PRE,
                                          [o](const llmc::sdk::hook_call &c) { o->observe_input(c.input(0)); }));
        }
    }

    // The module's observer, or nullptr when its weights do not use imatrix_mse.
    llmc::sdk::observer *observer_of(const std::string &module) const {
        auto it = observers_.find(module);
        return it == observers_.end() ? nullptr : it->second.get();
    }

    void finish(const llmc::sdk::host_ref &h) {
        for (uint64_t id : hooks_) h.hook_remove(id);
        hooks_.clear();
        observers_.clear();
    }

  private:
    std::map<std::string, std::unique_ptr<llmc::sdk::observer>> observers_;
    std::vector<uint64_t> hooks_;
};

} // namespace llmc_plugin_common
