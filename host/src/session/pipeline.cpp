#include "session/pipeline.h"

#include "session/activation_cache.h"
#include "session/session.h"
#include "util/error.h"
#include "util/progress.h"
#include "util/runtime.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <unistd.h>

namespace llmc {

pipeline_kind pipeline_parse(const std::string &name) {
    if (name == "independent") return pipeline_kind::independent;
    if (name == "sequential") return pipeline_kind::sequential;
    if (name == "basic") return pipeline_kind::basic;
    if (name == "datafree") return pipeline_kind::datafree;
    fail("unknown pipeline '{}' (valid: independent, sequential, basic, datafree)", name);
}

const char *pipeline_name(pipeline_kind k) {
    switch (k) {
    case pipeline_kind::independent: return "independent";
    case pipeline_kind::sequential: return "sequential";
    case pipeline_kind::basic: return "basic";
    case pipeline_kind::datafree: return "datafree";
    }
    return "?";
}

namespace {

struct run_ctx {
    session &s;
    const pipeline_options &opt;
    modifier_instance *only; // independent: the one modifier that sees events
};

// Module names of the given module indices (event payload storage).
struct name_list {
    std::vector<std::string> names;
    std::vector<const char *> ptrs;
    void add(const std::string &n) { names.push_back(n); }
    const char *const *finish() {
        ptrs.clear();
        for (const auto &n : names) ptrs.push_back(n.c_str());
        return ptrs.data();
    }
};

void fire_simple(run_ctx &c, uint32_t type) { c.s.fire(event_make(type), c.only); }

void fire_epoch_end(run_ctx &c, name_list &names, uint32_t index, uint32_t count) {
    llmc_event_t ev = event_make(LLMC_EVENT_SEQUENTIAL_EPOCH_END);
    ev.module_names = names.finish();
    ev.module_count = names.names.size();
    ev.subgraph_index = index;
    ev.subgraph_count = count;
    c.s.replay_set_open(true);
    try {
        c.s.fire(ev, c.only);
    } catch (...) {
        c.s.replay_set_open(false);
        throw;
    }
    c.s.replay_set_open(false);
}

name_list all_modules(session &s) {
    name_list n;
    for (size_t i = 0; i < s.module_count(); ++i) n.add(s.module_at(i).name());
    return n;
}

// Calibration context: no gradients, hooks on or off as asked.
struct hooks_state {
    hook_switch &sw;
    bool was;
    hooks_state(hook_switch &w, bool on) : sw(w), was(w.enabled) { sw.enabled = on; }
    ~hooks_state() { sw.enabled = was; }
};

std::string scratch_file(const run_ctx &c, const std::string &name) {
    namespace fs = std::filesystem;
    const fs::path dir = c.opt.scratch_dir.empty() ? fs::temp_directory_path() : fs::path(c.opt.scratch_dir);
    return (dir / fmt::format("llmc-{}-{}", ::getpid(), name)).string();
}

void run_datafree(run_ctx &c) {
    c.s.model().layers_onload_all(); // one epoch end with every module: the whole model in memory
    fire_simple(c, LLMC_EVENT_CALIBRATION_START);
    name_list n = all_modules(c.s);
    c.s.replay_begin_subgraph();
    fire_epoch_end(c, n, 0, 1);
    fire_simple(c, LLMC_EVENT_CALIBRATION_END);
}

void run_basic(run_ctx &c) {
    at::NoGradGuard no_grad;
    causal_lm &m = c.s.model();
    m.layers_onload_all(); // whole-model forward passes: the whole model in memory
    fire_simple(c, LLMC_EVENT_CALIBRATION_START);
    c.s.replay_begin_subgraph();
    {
        hooks_state on(m.hooks(), true);
        progress bar("calibrating", c.opt.batches.size());
        for (const auto &b : c.opt.batches) {
            if (c.s.cancelled()) fail("cancelled");
            m.forward(b);
            bar.step();
        }
    }
    name_list n = all_modules(c.s);
    fire_epoch_end(c, n, 0, 1);
    fire_simple(c, LLMC_EVENT_CALIBRATION_END);
}

// The modules of subgraph i: the layer's own, plus those before the first layer (embeddings) in
// the first subgraph and those after the last (final norm, lm_head) in the last. Containers
// ("", "model", "model.layers") belong to none.
name_list subgraph_modules(session &s, size_t i, size_t layers) {
    name_list n;
    const int64_t first_layer = s.module_index("model.layers.0");
    for (size_t k = 0; k < s.module_count(); ++k) {
        const int64_t layer = s.module_layer(k);
        const std::string &name = s.module_at(k).name();
        const bool outside = layer < 0 && !name.empty() && name != "model" && name != "model.layers";
        if (layer == static_cast<int64_t>(i)) n.add(name);
        else if (outside && i == 0 && first_layer > static_cast<int64_t>(k)) n.add(name);
        else if (outside && i + 1 == layers && first_layer < static_cast<int64_t>(k)) n.add(name);
    }
    return n;
}

// One subgraph per decoder layer. Each layer is brought into memory, calibrated (hooks on), handed
// to the modifiers (SEQUENTIAL_EPOCH_END), run again with hooks off so its changed outputs feed
// the next layer, then spilled and released when memory is to stay bounded.
void run_sequential(run_ctx &c) {
    at::NoGradGuard no_grad;
    causal_lm &m = c.s.model();
    const size_t layers = m.num_layers();
    activation_cache hidden(c.opt.activation_budget, scratch_file(c, "activations.bin"));
    fire_simple(c, LLMC_EVENT_CALIBRATION_START);
    c.s.replay_begin_subgraph();
    {
        hooks_state on(m.hooks(), true);
        for (const auto &b : c.opt.batches) hidden.push(m.embed(b));
    }
    if (hidden.spilled_bytes() > 0)
        spdlog::info("calibration activations: {:.1f} MiB in memory, {:.1f} MiB spilled to disk",
                     hidden.memory_bytes() / 1048576.0, hidden.spilled_bytes() / 1048576.0);
    progress bar(c.only != nullptr ? c.only->name() : std::string("calibrating"), layers);
    for (size_t i = 0; i < layers; ++i) {
        if (c.s.cancelled()) fail("cancelled");
        const bool last = i + 1 == layers;
        m.layer_onload(i);
        if (i > 0) c.s.replay_begin_subgraph();
        {
            hooks_state on(m.hooks(), true); // pass 1: calibration
            for (size_t k = 0; k < hidden.size(); ++k) {
                at::Tensor y = m.layer_forward(i, hidden.get(k));
                if (last) m.head(y); // calibrates the inputs of the final norm and lm_head
            }
        }
        name_list n = subgraph_modules(c.s, i, layers);
        fire_epoch_end(c, n, static_cast<uint32_t>(i), static_cast<uint32_t>(layers));
        {
            hooks_state off(m.hooks(), false); // pass 2: propagate the changed layer's outputs
            for (size_t k = 0; k < hidden.size(); ++k) hidden.set(k, m.layer_forward(i, hidden.get(k)));
        }
        if (c.opt.release_layers) {
            m.layer_spill(i, scratch_file(c, fmt::format("layer-{}.safetensors", i)));
            m.layer_release(i);
        }
        spdlog::debug("layer {} done: rss {:.1f} MiB, peak {:.1f} MiB", i, runtime_rss_mib(), runtime_peak_rss_mib());
        bar.step();
    }
    c.s.replay_begin_subgraph();
    fire_simple(c, LLMC_EVENT_CALIBRATION_END);
}

void run_kind(run_ctx &c, pipeline_kind k) {
    spdlog::debug("pipeline {}{}", pipeline_name(k), c.only ? " for " + c.only->name() : std::string());
    if ((k == pipeline_kind::sequential || k == pipeline_kind::basic) && c.opt.batches.empty())
        fail("the {} pipeline needs calibration data (--dataset)", pipeline_name(k));
    switch (k) {
    case pipeline_kind::sequential: run_sequential(c); break;
    case pipeline_kind::basic: run_basic(c); break;
    case pipeline_kind::datafree: run_datafree(c); break;
    case pipeline_kind::independent: break;
    }
}

} // namespace

void pipeline_run(session &s, const pipeline_options &opt) {
    if (opt.kind == pipeline_kind::datafree)
        for (const auto &m : s.modifiers())
            if (m->requires_calibration_data())
                fail("{}: {} needs calibration data, which the datafree pipeline does not give", m->where(), m->name());
    if (opt.kind != pipeline_kind::independent) {
        run_ctx c{s, opt, nullptr};
        run_kind(c, opt.kind);
        return;
    }
    struct reset_only {
        session &s;
        ~reset_only() { s.hooks_only(std::nullopt); }
    } reset{s};
    for (const auto &m : s.modifiers()) {
        run_ctx c{s, opt, m.get()};
        const bool data = m->requires_calibration_data();
        if (data && opt.batches.empty())
            fail("{}: {} needs calibration data: pass --dataset", m->where(), m->name());
        s.hooks_only(m->id());
        run_kind(c, data ? pipeline_kind::sequential : pipeline_kind::datafree);
    }
}

} // namespace llmc
