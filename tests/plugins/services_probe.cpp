// ServicesProbeModifier: a test plugin that exercises every host service and records every
// callback it sees, so tests can check the lifecycle order and each service's behaviour against
// a real model. Built exactly like a third party's plugin (SDK + LibTorch only).
#include <llmc/sdk/modifier.hpp>
#include <llmc/sdk/torch.hpp>

#include <algorithm>
#include <fstream>
#include <map>

namespace {

using llmc::sdk::json;
using llmc::sdk::status_error;

const char *event_name(uint32_t t) {
    switch (t) {
    case LLMC_EVENT_INITIALIZE: return "INITIALIZE";
    case LLMC_EVENT_FINALIZE: return "FINALIZE";
    case LLMC_EVENT_BATCH_START: return "BATCH_START";
    case LLMC_EVENT_LOSS_CALCULATED: return "LOSS_CALCULATED";
    case LLMC_EVENT_BATCH_END: return "BATCH_END";
    case LLMC_EVENT_CALIBRATION_START: return "CALIBRATION_START";
    case LLMC_EVENT_SEQUENTIAL_EPOCH_END: return "SEQUENTIAL_EPOCH_END";
    case LLMC_EVENT_CALIBRATION_END: return "CALIBRATION_END";
    case LLMC_EVENT_OPTIM_PRE_STEP: return "OPTIM_PRE_STEP";
    case LLMC_EVENT_OPTIM_POST_STEP: return "OPTIM_POST_STEP";
    default: return "UNKNOWN";
    }
}

class services_probe : public llmc::sdk::modifier {
  public:
    void declare(llmc::sdk::param_set &p) override {
        p.add("trace_path", trace_path_, "file the callback trace is appended to (one line per callback)");
        p.add("report_path", report_path_, "file the service report (JSON) is written to at finalize");
        p.add("targets", targets_, "modules to hook");
        p.add("ignore", ignore_, "modules to skip");
        p.add("needs_data", needs_data_, "what requires_calibration_data answers");
        p.add("fail_in", fail_in_, "callback that fails on purpose (tests of error paths)");
        p.add("scheme", scheme_, "preset attached to the targets");
        p.add("quantize", quantize_, "fake-quantize targeted weights at each epoch end");
        p.add("tag", tag_, "prefix of every trace line (tells two instances apart)");
        p.add("light", light_, "count hook calls only: keep no outputs, capture nothing (benchmarks)");
    }
    bool requires_calibration_data() const override { return needs_data_; }

    bool on_initialize() override {
        trace("on_initialize");
        maybe_fail("on_initialize");
        const auto &h = host();
        report_["host_name"] = h.raw()->name;
        report_["module_count"] = h.module_count();
        report_["root_class"] = h.module(0).class_name;
        report_["cancelled"] = h.cancelled();
        report_["extension_unknown_is_null"] = h.raw()->get_extension(h.raw(), "com.example.none/1") == nullptr;
        h.progress("probe", 0, 1);
        h.info("probe initialized");
        // module_find of an unknown module reports NOT_FOUND with a message.
        try {
            h.module("no.such.module");
            report_["unknown_module_error"] = "none";
        } catch (const status_error &e) {
            report_["unknown_module_error"] = e.code() == LLMC_ERR_NOT_FOUND ? "NOT_FOUND" : "other";
        }
        matched_ = h.match(targets_, ignore_);
        report_["matched"] = matched_;
        if (matched_.empty()) throw status_error(LLMC_ERR_INVALID_ARG, "no module matched");
        const std::string scheme = h.scheme_resolve(scheme_);
        report_["scheme"] = json::parse(scheme);
        for (const auto &m : matched_) h.scheme_attach(m, scheme);
        report_["scheme_get_matches"] = h.scheme_get(matched_[0]) == scheme;
        report_["scheme_get_unattached_empty"] = h.scheme_get(h.module(0).name).empty();
        return true;
    }

    void on_event(const llmc::sdk::event &e) override {
        trace(std::string("on_event:") + event_name(e.type()) + suffix(e));
        maybe_fail("on_event");
    }
    void on_start(const llmc::sdk::event &e) override { trace(std::string("on_start:") + event_name(e.type())); }
    void on_update(const llmc::sdk::event &e) override { trace(std::string("on_update:") + event_name(e.type())); }
    void on_end(const llmc::sdk::event &e) override { trace(std::string("on_end:") + event_name(e.type())); }

    void on_calibration_start(const llmc::sdk::event &) override {
        trace("on_calibration_start");
        maybe_fail("on_calibration_start");
        for (const auto &m : matched_) {
            const std::string name = m;
            add_hook(name, LLMC_HOOK_FORWARD_PRE, [this, name](const llmc::sdk::hook_call &c) {
                ++pre_calls_[name];
                inputs_seen_ += c.input_count();
            });
            add_hook(name, LLMC_HOOK_FORWARD, [this, name](const llmc::sdk::hook_call &c) {
                ++post_calls_[name];
                if (!light_) outputs_[name].push_back(llmc::sdk::borrow_tensor(*c.output()).clone());
            });
            if (!light_) host().replay_capture(name);
        }
        // A hook added and removed again never fires.
        uint64_t id = add_hook(matched_[0], LLMC_HOOK_FORWARD, [this](const llmc::sdk::hook_call &) { ++removed_calls_; });
        host().hook_remove(id);
    }

    void on_sequential_epoch_end(const llmc::sdk::event &e) override {
        trace("on_sequential_epoch_end" + suffix(e));
        maybe_fail("on_sequential_epoch_end");
        const auto &h = host();
        const std::vector<std::string> in_event = e.modules();
        json epoch = json::object();
        epoch["modules"] = in_event.size();
        epoch["batches"] = h.replay_batch_count();
        for (const auto &m : matched_) {
            if (std::find(in_event.begin(), in_event.end(), m) == in_event.end()) continue;
            if (outputs_[m].empty()) continue;
            // Replay with the current weights reproduces what the post hook saw.
            bool equal = true;
            h.replay_run(m, {}, [&](size_t b, const DLTensor &out) {
                equal = equal && b < outputs_[m].size() && at::allclose(llmc::sdk::borrow_tensor(out), outputs_[m][b]);
            });
            // Replay with a zero weight override gives zeros (no bias in Llama linears), and the
            // weight is restored afterwards.
            at::Tensor w = llmc::sdk::tensor_get(h, m, "weight");
            at::Tensor before = w.clone();
            at::Tensor zero = at::zeros_like(w);
            llmc::sdk::dl_view zv(zero);
            llmc_named_tensor_t ov{"weight", &zv.get()};
            bool zeros = true;
            h.replay_run(m, {ov}, [&](size_t, const DLTensor &out) {
                zeros = zeros && llmc::sdk::borrow_tensor(out).abs().max().item<double>() == 0.0;
            });
            bool restored = at::equal(llmc::sdk::tensor_get(h, m, "weight"), before);
            if (quantize_) {
                // The host's numerics: qparams from the weight, fake-quantize, write back.
                const std::string args = json::parse(h.scheme_get(m))["weights"].dump();
                llmc::sdk::dl_view wv(w);
                auto qp = h.qparams(args, wv.get());
                at::Tensor scale = llmc::sdk::to_tensor(std::move(qp.first));
                llmc::sdk::dl_view sv(scale);
                at::Tensor q = llmc::sdk::to_tensor(h.fake_quantize(args, wv.get(), sv.get()));
                llmc::sdk::tensor_set(h, m, "weight", q);
                llmc::sdk::tensor_set(h, m, "weight_scale", scale);
                max_quant_error_ = std::max(max_quant_error_, (q - before).abs().max().item<double>());
                quantized_.push_back(m);
            }
            epoch[m] = {{"replay_equal", equal}, {"replay_override_zero", zeros}, {"restored", restored}};
        }
        epochs_.push_back(epoch);
        outputs_.clear();
    }

    void on_calibration_end(const llmc::sdk::event &) override {
        trace("on_calibration_end");
        maybe_fail("on_calibration_end");
        // Buffers: add, list, read back, remove.
        const auto &h = host();
        const std::string m = matched_[0];
        at::Tensor mark = at::arange(4, at::kFloat);
        llmc::sdk::tensor_set(h, m, "probe_mark", mark);
        auto names = h.tensor_names(m, LLMC_TENSOR_BUFFER);
        bool listed = std::find(names.begin(), names.end(), "probe_mark") != names.end();
        bool read = at::equal(llmc::sdk::tensor_get(h, m, "probe_mark"), mark);
        h.tensor_remove(m, "probe_mark");
        names = h.tensor_names(m, LLMC_TENSOR_BUFFER);
        bool removed = std::find(names.begin(), names.end(), "probe_mark") == names.end();
        report_["buffer_roundtrip"] = listed && read && removed;
        auto params = h.tensor_names(m, LLMC_TENSOR_PARAMETER);
        report_["params_of_first"] = params;
        check_weight_qparams_defer(m);
        check_weight_qparams_store();
        // Replay is only open during SEQUENTIAL_EPOCH_END.
        try {
            h.replay_run(m, {}, [](size_t, const DLTensor &) {});
            report_["replay_outside_epoch"] = "allowed";
        } catch (const status_error &e) {
            report_["replay_outside_epoch"] = e.code() == LLMC_ERR_UNAVAILABLE ? "UNAVAILABLE" : "other";
        }
        if (quantize_) h.quantization_enable(true);
    }

    // weight_qparams_defer (ABI 1.2): when a plugin next looks at the module, the host has stored
    // exactly what an eager observe-and-store gives. A scale stored before (quantize mode) is put
    // back afterwards, so the checkpoint does not depend on this check.
    void check_weight_qparams_defer(const std::string &m) {
        const auto &h = host();
        const std::string args = json::parse(h.scheme_get(m))["weights"].dump();
        auto has_scale = [&] {
            const auto names = h.tensor_names(m, LLMC_TENSOR_BUFFER);
            return std::find(names.begin(), names.end(), "weight_scale") != names.end();
        };
        at::Tensor saved;
        if (has_scale()) saved = llmc::sdk::tensor_get(h, m, "weight_scale").clone();
        const at::Tensor w = llmc::sdk::tensor_get(h, m, "weight");
        auto obs = h.make_observer(args, LLMC_OBSERVE_WEIGHT);
        llmc::sdk::dl_view wv(w);
        obs->observe(wv.get());
        const at::Tensor eager = llmc::sdk::to_tensor(std::move(obs->qparams().scale)).to(w.scalar_type());
        report_["defer_taken"] = h.weight_qparams_defer(m);
        report_["defer_settles_as_eager"] = has_scale() && at::equal(llmc::sdk::tensor_get(h, m, "weight_scale"), eager);
        if (saved.defined()) llmc::sdk::tensor_set(h, m, "weight_scale", saved);
        try {
            h.weight_qparams_defer(h.module(0).name); // the root: no scheme
            report_["defer_unattached"] = "none";
        } catch (const status_error &e) {
            report_["defer_unattached"] = e.code() == LLMC_ERR_NOT_FOUND ? "NOT_FOUND" : "other";
        }
    }

    // weight_qparams_store (ABI 1.3): the host stores what an eager observe of the modules' rows
    // concatenated, then tensor_set, leaves: the first target alone, or with a tensor_group
    // scheme the first three (q/k/v of layer 0) as one partner set sharing a global scale. What
    // was stored before is put back afterwards.
    void check_weight_qparams_store() {
        const auto &h = host();
        const json args = json::parse(h.scheme_get(matched_[0]))["weights"];
        std::vector<std::string> set = {matched_[0]};
        if (args.value("strategy", std::string()) == "tensor_group" && matched_.size() >= 3)
            set = {matched_[0], matched_[1], matched_[2]};
        report_["store_set"] = set;
        const char *names[] = {"weight_scale", "weight_zero_point", "weight_global_scale"};
        std::map<std::string, at::Tensor> saved;
        for (const auto &m : set)
            for (const auto &b : h.tensor_names(m, LLMC_TENSOR_BUFFER))
                for (const char *n : names)
                    if (b == n) saved[m + "|" + n] = llmc::sdk::tensor_get(h, m, n).clone();
        std::vector<at::Tensor> ws;
        for (const auto &m : set) ws.push_back(llmc::sdk::tensor_get(h, m, "weight"));
        auto obs = h.make_observer(args.dump(), LLMC_OBSERVE_WEIGHT);
        const at::Tensor all = at::cat(ws, 0);
        llmc::sdk::dl_view av(all);
        obs->observe(av.get());
        auto q = obs->qparams();
        const at::Tensor scale = llmc::sdk::to_tensor(std::move(q.scale));
        const at::Tensor gs = llmc::sdk::to_tensor(std::move(q.global_scale));
        report_["store_taken"] = h.weight_qparams_store(set);
        bool same = true;
        int64_t row = 0;
        for (size_t i = 0; i < set.size(); ++i) {
            const int64_t rows = ws[i].size(0);
            const at::ScalarType dt = ws[i].scalar_type();
            const at::Tensor stored = llmc::sdk::tensor_get(h, set[i], "weight_scale");
            same = same && stored.scalar_type() == dt && at::equal(stored, scale.slice(0, row, row + rows).to(dt));
            if (gs.defined())
                same = same && at::equal(llmc::sdk::tensor_get(h, set[i], "weight_global_scale"),
                                         gs.to(dt).to(at::kFloat));
            row += rows;
        }
        report_["store_as_eager"] = same;
        auto code_of = [&](const std::vector<std::string> &mods) -> std::string {
            try {
                h.weight_qparams_store(mods);
                return "none";
            } catch (const status_error &e) {
                return e.code() == LLMC_ERR_NOT_FOUND     ? "NOT_FOUND"
                       : e.code() == LLMC_ERR_INVALID_ARG ? "INVALID_ARG"
                                                          : "other";
            }
        };
        report_["store_twice"] = code_of({matched_[0], matched_[0]});
        report_["store_unattached"] = code_of({h.module(0).name});
        for (const auto &m : set)
            for (const char *n : names) {
                auto it = saved.find(m + "|" + n);
                if (it != saved.end()) llmc::sdk::tensor_set(h, m, n, it->second);
                else {
                    const auto now = h.tensor_names(m, LLMC_TENSOR_BUFFER);
                    if (std::find(now.begin(), now.end(), n) != now.end()) h.tensor_remove(m, n);
                }
            }
    }

    bool on_finalize() override {
        trace("on_finalize");
        maybe_fail("on_finalize");
        report_["pre_calls"] = pre_calls_;
        report_["post_calls"] = post_calls_;
        report_["inputs_seen"] = inputs_seen_;
        report_["removed_hook_calls"] = removed_calls_;
        report_["epochs"] = epochs_;
        report_["quantized"] = quantized_;
        report_["max_quant_error"] = max_quant_error_;
        if (!report_path_.empty()) std::ofstream(report_path_) << report_.dump(2) << "\n";
        return true;
    }

  private:
    static std::string suffix(const llmc::sdk::event &e) {
        if (e.type() != LLMC_EVENT_SEQUENTIAL_EPOCH_END) return "";
        return ":" + std::to_string(e.raw->subgraph_index) + "/" + std::to_string(e.raw->subgraph_count);
    }
    void trace(const std::string &line) {
        if (!trace_path_.empty()) std::ofstream(trace_path_, std::ios::app) << tag_ << line << "\n";
    }
    void maybe_fail(const std::string &where) {
        if (fail_in_ == where) throw std::runtime_error("probe fails in " + where + " on purpose");
    }

    std::string trace_path_, report_path_, fail_in_, tag_, scheme_ = "W8A8";
    std::vector<std::string> targets_{"Linear"}, ignore_{"lm_head"};
    bool needs_data_ = true, quantize_ = false, light_ = false;
    std::vector<std::string> matched_, quantized_;
    std::map<std::string, int64_t> pre_calls_, post_calls_;
    std::map<std::string, std::vector<at::Tensor>> outputs_;
    int64_t inputs_seen_ = 0, removed_calls_ = 0;
    double max_quant_error_ = 0;
    json report_ = json::object(), epochs_ = json::array();
};

} // namespace

LLMC_DECLARE_MODIFIER(services_probe, "ServicesProbeModifier", "1.0.0",
                      "Test plugin: exercises every host service and records the callbacks it sees", 0)
