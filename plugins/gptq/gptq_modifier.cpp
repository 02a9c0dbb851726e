// GPTQModifier: llm-compressor's GPTQ (reference/algorithms.md section 2). Pre-forward hooks
// accumulate each targeted Linear's Hessian (shared by modules that read the same input); at
// each subgraph's end the qparams are observed once from the original weights, then every
// module's weight is swept column by column, each column rounded by the host's fake_quantize
// with its group's qparams and the error spread over the later columns. The fake-quantized
// weight and the qparam buffers go back through tensor_set.
#include "../common/activation_calibration.hpp"
#include "../common/imatrix_inputs.hpp"
#include "../common/weight_qparams.hpp"
#include "gptq_solver.h"
#include "hessian.h"

#include <llmc/sdk/modifier.hpp>
#include <llmc/sdk/torch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

namespace {

using namespace llmc_plugin_common;

enum class act_order { none, weight, group };

act_order act_order_of(const json &args) {
    const json a = args.value("actorder", json());
    if (a == json("static") || a == json("weight")) return act_order::weight;
    if (a == json("group") || a == json("dynamic") || a == json(true)) return act_order::group;
    return act_order::none;
}

std::string fmt_double(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

// Per-column qparams laid out for the sweep: row g of `scale` holds the per-row scales of group
// g (the effective scale scale/global_scale for tensor_group), so a task's slice is contiguous.
struct column_qparams {
    at::Tensor scale, zero_point; // [groups, rows]
    at::Tensor group;             // int64 [c] group of each sweep column; undefined: group 0
    std::string args;             // channel-strategy args: a column is quantized channel-wise
};

column_qparams make_column_qparams(const json &args, const weight_qparams &q, int64_t rows, const at::Tensor &g_idx) {
    const std::string strategy = strategy_of(args);
    auto lay_out = [&](const at::Tensor &t) -> at::Tensor {
        if (!t.defined()) return t;
        if (strategy == "tensor") return t.reshape({1, 1}).expand({1, rows}).contiguous();
        if (strategy == "channel") return t.reshape({1, rows}).contiguous();
        if (strategy == "block") {
            // A column of a row block uses that block's scale: one value per row.
            const int64_t bh = args["block_structure"][0].get<int64_t>();
            return t.repeat_interleave(bh, 0).slice(0, 0, rows).t().contiguous();
        }
        return t.t().contiguous(); // group, tensor_group: [rows, groups]
    };
    column_qparams c;
    c.scale = lay_out(effective_scale(q));
    c.zero_point = lay_out(q.zero_point);
    if (strategy == "group" || strategy == "tensor_group" || strategy == "block")
        c.group = g_idx.to(at::kLong).contiguous();
    c.args = channel_args(args).dump();
    return c;
}

class gptq_modifier : public llmc::sdk::modifier {
  public:
    void declare(llmc::sdk::param_set &p) override {
        mixin_.declare(p);
        p.add("block_size", block_size_, "columns per block of the sweep").minimum(1);
        p.add("dampening_frac", dampening_frac_, "damping added to diag(H), as a fraction of its mean").minimum(0);
        p.add("actorder", actorder_, "column order: static/weight (by diag H), group/dynamic (also regroups), null")
            .nullable()
            .choices({"static", "weight", "group", "dynamic"})
            .check([this](const json &) { actorder_explicit_ = true; });
        p.add("offload_hessians", offload_hessians_, "accepted for compatibility; Hessians stay in memory");
    }

    void validate() override {
        // resolve_actorder: the default yields to a scheme's own actorder; an explicit one must agree.
        mixin_.adjust_weights = [this](const std::string &group, json &w) {
            const std::string strategy = strategy_of(w);
            if (strategy != "group" && strategy != "tensor_group" && strategy != "channel" && strategy != "tensor" &&
                strategy != "block")
                return;
            const json existing = w.value("actorder", json());
            json resolved;
            if (!actorder_explicit_) {
                resolved = existing.is_null() ? json("static") : existing;
            } else {
                const json mine = actorder_ ? json(*actorder_) : json();
                if (!existing.is_null() && existing != mine)
                    throw invalid_arg("Cannot resolve activation ordering when both `GPTQModifier.actorder` and "
                                      "`QuantizationScheme.actorder` are provided and differ (" +
                                      mine.dump() + ", " + existing.dump() + "). Either unset `GPTQModifier.actorder` "
                                      "or remove `actorder` from config groups.");
                resolved = mine;
            }
            if ((resolved == json("group") || resolved == json("dynamic")) && strategy != "group" &&
                strategy != "tensor_group") {
                host().warn("actorder group is not compatible with strategy " + strategy + " (" + group +
                            "); falling back to actorder=None for this scheme");
                resolved = nullptr;
            }
            w["actorder"] = resolved;
        };
        mixin_.resolve(host());
    }

    bool on_initialize() override {
        if (mixin_.has_config()) {
            mixin_.match(host());
            mixin_.attach(host());
        } else {
            mixin_.adopt_attached(host()); // schemes a modifier before this one attached
        }
        if (offload_hessians_) host().debug("offload_hessians is accepted and ignored: Hessians stay in memory");
        return true;
    }

    void on_calibration_start(const llmc::sdk::event &) override {
        if (mixin_.has_config()) activations_.start(*this, mixin_);
        imatrix_.start(*this, mixin_);
        for (const auto &m : mixin_.modules()) {
            const json *s = mixin_.scheme_of(m);
            if (!present(*s, "weights")) continue;
            hooks_.push_back(add_hook(m, LLMC_HOOK_FORWARD_PRE, [this, m](const llmc::sdk::hook_call &c) {
                const at::Tensor x = llmc::sdk::borrow_tensor(c.input(0));
                if (checked_.insert(m).second) mixin_.check_divisible({{m, x.size(-1)}}); // fail early
                pool_.add(m, x);
            }));
        }
        if (hooks_.empty())
            throw invalid_arg("GPTQModifier was unable to find any modules to quantize. Please check quantization "
                              "`config_groups` and `targets` in recipe");
    }

    void on_sequential_epoch_end(const llmc::sdk::event &e) override {
        const std::vector<std::string> modules = e.modules();
        activations_.write(host(), modules);
        std::vector<std::string> todo;
        for (const auto &m : modules)
            if (pool_.has(m)) todo.push_back(m);
        compress(todo);
    }

    void on_calibration_end(const llmc::sdk::event &) override {
        activations_.finish(host());
        for (uint64_t id : hooks_) host().hook_remove(id);
        hooks_.clear();
        compress(pool_.modules()); // calibrated but in no subgraph's list
        imatrix_.finish(host());
        if (pool_.updates() > 0)
            host().info("Hessian updates: " + std::to_string(pool_.updates()) + " done, " +
                        std::to_string(pool_.updates_saved()) + " saved by sharing inputs");
        if (mixin_.has_config()) host().quantization_enable(true);
    }

  private:
    const json &weight_args(const std::string &m) const { return (*mixin_.scheme_of(m))["weights"]; }

    void compress(const std::vector<std::string> &todo) {
        if (todo.empty()) return;
        std::vector<std::pair<std::string, int64_t>> columns;
        for (const auto &m : todo) columns.emplace_back(m, llmc::sdk::tensor_get(host(), m, "weight").size(1));
        mixin_.check_divisible(columns);
        // Qparams once, from the original weights, before any of them changes.
        const auto qparams = observe_weights(host(), todo, [&](const std::string &m) { return &weight_args(m); },
                                             [&](const std::string &m) { return imatrix_.observer_of(m); });
        keep_partner_originals(todo);
        for (size_t i = 0; i < todo.size(); ++i) {
            host().check_cancelled();
            host().progress("GPTQ", i, todo.size());
            try {
                compress_one(todo[i], qparams.at(todo[i]));
            } catch (const status_error &e) {
                if (e.code() == LLMC_ERR_CANCELLED) throw;
                throw status_error(e.code(), todo[i] + ": " + e.what());
            }
        }
        factors_.clear();
        originals_.clear();
    }

    void compress_one(const std::string &m, weight_qparams q) {
        const auto t0 = std::chrono::steady_clock::now();
        const json &args = weight_args(m);
        const std::string strategy = strategy_of(args);
        act_order order = act_order_of(args);
        if (order == act_order::group && !is_group_like(args)) order = act_order::none;

        // The factor depends on the Hessian alone: modules that shared one compute it once.
        const std::pair<const void *, bool> key{pool_.group_of(m), order != act_order::none};
        auto cached = factors_.find(key);
        auto taken = pool_.take(m, cached == factors_.end());
        std::shared_ptr<llmc_gptq::hessian_factor> f;
        if (cached != factors_.end()) {
            f = cached->second;
        } else {
            f = std::make_shared<llmc_gptq::hessian_factor>(
                llmc_gptq::factor_hessian(std::move(taken.mean), key.second, dampening_frac_,
                                          llmc_gptq::factor_method::cholesky_only, block_size_));
            if (!taken.shared_with.empty()) factors_[key] = f;
        }
        if (f->fell_back)
            host().warn(m + ": failed to invert the Hessian due to numerical instability; consider increasing "
                            "dampening_frac or the number of calibration samples. Falling back to round-to-nearest "
                            "for this module.");

        const at::Tensor w0 = llmc::sdk::tensor_get(host(), m, "weight");
        const int64_t rows = w0.size(0), cols = w0.size(1);
        at::Tensor W = llmc_gptq::to_sweep_order(w0, *f);

        at::Tensor g_idx; // group of each column, sweep order
        if (is_group_like(args) || strategy == "block") {
            const int64_t divisor = strategy == "block" ? args["block_structure"][1].get<int64_t>()
                                                        : args["group_size"].get<int64_t>();
            g_idx = at::div(at::arange(cols, at::kLong), divisor, "floor");
            if (order == act_order::weight) g_idx = g_idx.index_select(0, f->perm); // original groups
        }
        if (order == act_order::group) q = observe_permuted(m, args, W); // groups follow the new order
        llmc_gptq::zero_dead(W, *f);

        const column_qparams cq = make_column_qparams(args, q, rows, g_idx);
        const llmc::sdk::host_ref h = host();
        const llmc_gptq::column_fn fq = [&cq, h](const at::Tensor &column, int64_t j, int64_t row_begin) {
            const int64_t g = cq.group.defined() ? cq.group.data_ptr<int64_t>()[j] : 0;
            const int64_t n = column.size(0);
            const at::Tensor s = cq.scale[g].slice(0, row_begin, row_begin + n).unsqueeze(1);
            llmc::sdk::dl_view xv(column), sv(s);
            std::optional<llmc::sdk::dl_view> zv;
            if (cq.zero_point.defined()) zv.emplace(cq.zero_point[g].slice(0, row_begin, row_begin + n).unsqueeze(1));
            return llmc::sdk::to_tensor(h.fake_quantize(cq.args, xv.get(), sv.get(), zv ? &zv->get() : nullptr));
        };
        llmc_gptq::sweep_options opt;
        opt.block_size = block_size_;
        const double loss = llmc_gptq::sweep_inverse_factor(W, *f, fq, opt);

        llmc::sdk::tensor_set(host(), m, "weight", llmc_gptq::from_sweep_order(W, *f).to(w0.scalar_type()));
        at::Tensor saved_g_idx;
        if (order == act_order::group) saved_g_idx = g_idx.index_select(0, at::argsort(f->perm));
        store_weight_qparams(host(), m, args, q, w0.scalar_type(), saved_g_idx);

        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        host().report(m, "loss", loss);
        host().report(m, "time_s", secs);
        host().report(m, "samples", static_cast<double>(taken.samples));
        std::string msg = m + ": GPTQ loss " + fmt_double(loss) + ", " + std::to_string(taken.samples) +
                          " samples, " + fmt_double(secs) + " s";
        if (!taken.shared_with.empty() || cached != factors_.end()) msg += " (shared Hessian)";
        host().info(msg);
        if (!std::isfinite(loss)) host().warn(m + ": GPTQ loss is not finite");
    }

    // Act-order group re-observes the permuted weight (llm-compressor's observer(W)). A
    // tensor_group module keeps its partners' global scale: observed beside their original
    // weights, whose overall range the permutation does not change.
    weight_qparams observe_permuted(const std::string &m, const json &args, const at::Tensor &W) {
        if (args.value("observer", json()) == json("imatrix_mse"))
            host().warn(m + ": imatrix_mse with actorder group: the permuted weight is observed with uniform MSE "
                            "(the input importance is in the original column order)");
        const std::string key = strategy_of(args) == "tensor_group" ? fused_key(m) : "";
        std::vector<at::Tensor> parts{W};
        for (const auto &[name, w] : originals_)
            if (name != m && fused_key(name) == key && !key.empty()) parts.push_back(w.to(at::kFloat));
        if (parts.size() == 1) return observe_weight(host(), args, W, m);
        weight_qparams all = observe_weight(host(), args, at::cat(parts, 0), m);
        weight_qparams q = all;
        q.scale = all.scale.slice(0, 0, W.size(0)).clone();
        if (all.zero_point.defined()) q.zero_point = all.zero_point.slice(0, 0, W.size(0)).clone();
        return q;
    }

    // Complete tensor_group partner sets with act-order group need the partners' weights as they
    // were before GPTQ changed them (see observe_permuted).
    void keep_partner_originals(const std::vector<std::string> &todo) {
        std::map<std::string, std::vector<std::string>> sets;
        for (const auto &m : todo)
            if (strategy_of(weight_args(m)) == "tensor_group" && act_order_of(weight_args(m)) == act_order::group &&
                !fused_key(m).empty())
                sets[fused_key(m)].push_back(m);
        for (const auto &[key, members] : sets)
            if (members.size() == fused_size(key))
                for (const auto &m : members) originals_[m] = llmc::sdk::tensor_get(host(), m, "weight").clone();
    }

    quantization_mixin mixin_;
    activation_calibration activations_;
    imatrix_inputs imatrix_; // imatrix_mse weight observers and their input statistics
    llmc_gptq::hessian_pool pool_;
    std::map<std::pair<const void *, bool>, std::shared_ptr<llmc_gptq::hessian_factor>> factors_;
    std::map<std::string, at::Tensor> originals_;
    std::set<std::string> checked_;
    std::vector<uint64_t> hooks_;

    int64_t block_size_ = 128;
    double dampening_frac_ = 0.01;
    std::optional<std::string> actorder_ = std::string("static");
    bool actorder_explicit_ = false;
    bool offload_hessians_ = false;
};

} // namespace

LLMC_DECLARE_MODIFIER(gptq_modifier, "GPTQModifier", "1.0.0",
                      "GPTQ: second-order weight quantization with llm-compressor's exact algorithm",
                      LLMC_MODIFIER_REQUIRES_DATA)
