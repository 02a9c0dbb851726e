// QuantizationModifier: llm-compressor's round-to-nearest PTQ. Schemes are attached at
// initialize; static activations are observed by forward hooks during calibration; at each
// subgraph's end the activation and weight qparams of its modules are stored as
// compressed-tensors buffers (weights themselves stay as they are: the exporter quantizes them
// with these qparams), or the weight qparams are left to the host where it can compute them
// from the weight alone, or observed and stored by the host; fake-quantization is switched on
// when calibration ends.
#include "../common/activation_calibration.hpp"
#include "../common/imatrix_inputs.hpp"
#include "../common/weight_qparams.hpp"

#include <llmc/sdk/modifier.hpp>
#include <llmc/sdk/torch.hpp>

#include <chrono>
#include <set>
#include <vector>

namespace {

using namespace llmc_plugin_common;

class quantization_modifier : public llmc::sdk::modifier {
  public:
    void declare(llmc::sdk::param_set &p) override { mixin_.declare(p); }

    // Resolving here rejects a bad scheme when the recipe is loaded, as pydantic would.
    void validate() override {
        mixin_.resolve(host());
        requires_data_ = mixin_.requires_calibration_data() || requires_calibration_data_field.value_or(false);
    }
    bool requires_calibration_data() const override { return requires_data_; }

    bool on_initialize() override {
        if (!mixin_.has_config())
            throw invalid_arg("QuantizationModifier requires that quantization fields be specified");
        mixin_.match(host());
        mixin_.attach(host());
        host().info(std::to_string(mixin_.modules().size()) + " modules to quantize in " +
                    std::to_string(mixin_.groups().size()) + " group(s)");
        return true;
    }

    void on_calibration_start(const llmc::sdk::event &) override {
        activations_.start(*this, mixin_);
        imatrix_.start(*this, mixin_);
    }

    void on_sequential_epoch_end(const llmc::sdk::event &e) override {
        const std::vector<std::string> modules = e.modules();
        activations_.write(host(), modules);
        quantize_weights(modules);
    }

    void on_calibration_end(const llmc::sdk::event &) override {
        activations_.finish(host());
        // Modules no subgraph listed still get their qparams.
        std::vector<std::string> rest;
        for (const auto &m : mixin_.modules())
            if (!done_.count(m)) rest.push_back(m);
        if (!rest.empty()) quantize_weights(rest);
        imatrix_.finish(host());
        host().quantization_enable(true);
    }

  private:
    // update_weight_zp_scale for this subgraph's targeted modules.
    void quantize_weights(const std::vector<std::string> &event_modules) {
        std::vector<std::string> todo;
        std::vector<std::pair<std::string, int64_t>> columns;
        for (const auto &m : event_modules) {
            const json *s = mixin_.scheme_of(m);
            if (s == nullptr || done_.count(m) || !present(*s, "weights")) continue;
            todo.push_back(m);
            columns.emplace_back(m, llmc::sdk::tensor_get(host(), m, "weight").size(1));
        }
        if (todo.empty()) return;
        mixin_.check_divisible(columns);
        // Weight qparams the host can compute from the weight alone are left to it: the exporter
        // then observes and packs each weight in one read of it (weight_qparams_defer).
        std::vector<std::string> eager;
        for (const auto &m : todo) {
            const auto t1 = std::chrono::steady_clock::now();
            if (imatrix_.observer_of(m) != nullptr || !host().weight_qparams_defer(m)) {
                eager.push_back(m);
                continue;
            }
            host().report(m, "time_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
            done_.insert(m);
        }
        todo = host_observed(eager);
        if (todo.empty()) return;
        const auto t0 = std::chrono::steady_clock::now();
        const auto qparams =
            observe_weights(host(), todo, [&](const std::string &m) { return &(*mixin_.scheme_of(m))["weights"]; },
                            [&](const std::string &m) { return imatrix_.observer_of(m); });
        const double observe_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (const auto &m : todo) {
            host().check_cancelled();
            const auto t1 = std::chrono::steady_clock::now();
            const json &args = (*mixin_.scheme_of(m))["weights"];
            const at::Tensor w = llmc::sdk::tensor_get(host(), m, "weight");
            const weight_qparams &q = qparams.at(m);
            store_weight_qparams(host(), m, args, q, w.scalar_type());
            // RTN's figure, the weight's mean squared rounding error, is the host's: the exporter
            // measures it on what it writes, in the same pass that packs the weight.
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() +
                                observe_s / static_cast<double>(todo.size());
            host().report(m, "time_s", secs);
            done_.insert(m);
        }
    }

    // Weight qparams of `modules` observed and stored by the host (weight_qparams_store): it reads
    // each weight once from its file, and observes a complete tensor_group partner set (NVFP4's
    // q/k/v, gate/up: one global scale) without the concatenated copy. Returns the modules left
    // to observe here (imatrix_mse observers, which hold the inputs; a host before ABI 1.3).
    std::vector<std::string> host_observed(const std::vector<std::string> &modules) {
        std::vector<std::string> mine, rest;
        for (const auto &m : modules) (imatrix_.observer_of(m) != nullptr ? rest : mine).push_back(m);
        const auto args_of = [&](const std::string &m) { return &(*mixin_.scheme_of(m))["weights"]; };
        for (const auto &unit : observation_units(mine, args_of)) {
            const auto t0 = std::chrono::steady_clock::now();
            if (!host().weight_qparams_store(unit)) {
                rest.insert(rest.end(), unit.begin(), unit.end());
                continue;
            }
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            for (const auto &m : unit) {
                host().report(m, "time_s", secs / static_cast<double>(unit.size()));
                done_.insert(m);
            }
        }
        return rest;
    }

    quantization_mixin mixin_;
    activation_calibration activations_;
    imatrix_inputs imatrix_;
    std::set<std::string> done_;
    bool requires_data_ = false;
};

} // namespace

LLMC_DECLARE_MODIFIER(quantization_modifier, "QuantizationModifier", "1.0.0",
                      "Round-to-nearest quantization with llm-compressor's schemes and observers", 0)
