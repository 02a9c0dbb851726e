// QuantizationModifier: llm-compressor's round-to-nearest PTQ. Schemes are attached at
// initialize; static activations are observed by forward hooks during calibration; at each
// subgraph's end the activation and weight qparams of its modules are stored as
// compressed-tensors buffers (weights themselves stay as they are: the exporter quantizes them
// with these qparams); fake-quantization is switched on when calibration ends.
#include "../common/activation_calibration.hpp"
#include "../common/imatrix_inputs.hpp"
#include "../common/weight_qparams.hpp"

#include <llmc/sdk/modifier.hpp>
#include <llmc/sdk/torch.hpp>

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

namespace {

using namespace llmc_plugin_common;

// Sum of (a - b)^2 over float32 differences, a and b contiguous of one float dtype: runs of 256
// in eight float lanes (so that it vectorizes), each run's total added in double.
template <class T> double sum_squared_difference(const T *a, const T *b, int64_t n) {
    double total = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int64_t i1 = std::min(n, i0 + 256);
        float lane[8] = {};
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
            for (int l = 0; l < 8; ++l) {
                const float d = static_cast<float>(a[i + l]) - static_cast<float>(b[i + l]);
                lane[l] += d * d;
            }
        for (; i < i1; ++i) {
            const float d = static_cast<float>(a[i]) - static_cast<float>(b[i]);
            lane[0] += d * d;
        }
        double run = 0;
        for (float v : lane) run += v;
        total += run;
    }
    return total;
}

// mean((a - b)^2) over float32 differences, in one pass without temporaries: the weights are the
// model's largest tensors. Fixed blocks summed in order keep the figure independent of the
// thread count.
inline double mean_squared_error(const at::Tensor &a_in, const at::Tensor &b_in) {
    if (a_in.scalar_type() != b_in.scalar_type() || a_in.sizes() != b_in.sizes() || a_in.numel() == 0 ||
        !at::isFloatingType(a_in.scalar_type()))
        return (a_in.to(at::kFloat) - b_in.to(at::kFloat)).pow(2).mean().item<double>();
    const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
    const int64_t n = a.numel(), block = int64_t{1} << 16, blocks = (n + block - 1) / block;
    std::vector<double> sums(static_cast<size_t>(blocks), 0.0);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "mean_squared_error", [&] {
        const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>();
        at::parallel_for(0, blocks, 4, [&](int64_t k0, int64_t k1) {
            for (int64_t k = k0; k < k1; ++k) {
                const int64_t i = k * block;
                sums[static_cast<size_t>(k)] = sum_squared_difference(pa + i, pb + i, std::min(block, n - i));
            }
        });
    });
    double total = 0;
    for (double s : sums) total += s;
    return total / static_cast<double>(n);
}

// mean((fake_quantize(w) - w)^2). Where the qparams go by rows (channel, group), blocks of rows
// are fake-quantized and compared on the host's threads, so the quantized copy stays in cache
// instead of costing a weight-sized allocation; other strategies quantize the whole weight.
inline double weight_mse(const llmc::sdk::host_ref &h, const json &args, const at::Tensor &w, const weight_qparams &q) {
    const std::string st = strategy_of(args);
    const int64_t rows = w.dim() == 2 ? w.size(0) : 0;
    const bool by_rows = (st == "channel" || st == "group") && rows > 0 && w.is_contiguous() &&
                         !q.global_scale.defined() && q.scale.dim() == 2 && q.scale.size(0) == rows &&
                         q.scale.is_contiguous() &&
                         (!q.zero_point.defined() || (q.zero_point.dim() == 2 && q.zero_point.size(0) == rows &&
                                                      q.zero_point.is_contiguous()));
    if (!by_rows || w.numel() == 0) return mean_squared_error(fake_quantize_weight(h, args, w, q), w);
    const int64_t block = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, w.size(1)));
    const int64_t blocks = (rows + block - 1) / block;
    const std::string text = args.dump();
    std::vector<double> sums(static_cast<size_t>(blocks), 0.0);
    std::exception_ptr failed;
    std::mutex mu;
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        try {
            for (int64_t b = b0; b < b1; ++b) {
                const int64_t r0 = b * block, r1 = std::min(rows, r0 + block);
                const at::Tensor x = w.slice(0, r0, r1);
                llmc::sdk::dl_view xv(x), sv(q.scale.slice(0, r0, r1));
                std::optional<llmc::sdk::dl_view> zv;
                if (q.zero_point.defined()) zv.emplace(q.zero_point.slice(0, r0, r1));
                const at::Tensor f =
                    llmc::sdk::to_tensor(h.fake_quantize(text, xv.get(), sv.get(), zv ? &zv->get() : nullptr));
                sums[static_cast<size_t>(b)] = mean_squared_error(f, x) * static_cast<double>(x.numel());
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu);
            if (!failed) failed = std::current_exception();
        }
    });
    if (failed) std::rethrow_exception(failed);
    double total = 0;
    for (double v : sums) total += v;
    return total / static_cast<double>(w.numel());
}

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
            // The mean squared rounding error is the figure RTN can be judged by.
            const double mse = weight_mse(host(), args, w, q);
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() +
                                observe_s / static_cast<double>(todo.size());
            host().report(m, "error", mse);
            host().report(m, "time_s", secs);
            host().debug(m + ": weight mse " + std::to_string(mse));
            done_.insert(m);
        }
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
