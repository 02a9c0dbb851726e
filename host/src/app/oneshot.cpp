#include "app/oneshot.h"

#include "app/output_dir.h"
#include "app/run_report.h"
#include "export/compressed_tensors.h"
#include "model/causal_lm.h"
#include "plugin/params_check.h"
#include "plugin/plugin_registry.h"
#include "recipe/recipe.h"
#include "session/pipeline.h"
#include "session/session.h"
#include "util/error.h"
#include "util/runtime.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace llmc {

namespace fs = std::filesystem;

// "int4 group128 sym" style: enough to read a report table.
std::string scheme_summary(const std::string &scheme_json) {
    auto j = nlohmann::json::parse(scheme_json);
    auto one = [](const nlohmann::json &a) {
        if (a.is_null()) return std::string();
        std::string s = a.value("type", "int") + std::to_string(a.value("num_bits", 8)) + " " + a.value("strategy", "");
        if (a.contains("group_size") && a["group_size"].is_number()) s += std::to_string(a["group_size"].get<int>());
        if (!a.value("symmetric", true)) s += " asym";
        return s;
    };
    std::string s = "W:" + one(j.value("weights", nlohmann::json()));
    const std::string in = one(j.value("input_activations", nlohmann::json()));
    if (!in.empty()) s += " A:" + in;
    return s;
}

uint64_t safetensors_bytes(const std::string &dir) {
    uint64_t n = 0;
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".safetensors") n += e.file_size();
    return n;
}

at::ScalarType dtype_parse(const std::string &s) {
    if (s == "float32" || s == "fp32") return at::kFloat;
    if (s == "bfloat16" || s == "bf16") return at::kBFloat16;
    fail("unknown --dtype '{}' (valid: float32, bfloat16)", s);
}

void oneshot_run(const oneshot_options &opt) {
    // Everything that can be checked without the weights is checked first, so a bad recipe, option
    // or dataset fails in milliseconds and nothing is written.
    plugin_registry reg;
    for (const auto &d : opt.plugin_dirs) reg.scan(d);
    recipe r = recipe_load_file(opt.recipe);
    std::vector<std::shared_ptr<plugin_library>> libs;
    for (const auto &m : r.modifiers) {
        auto lib = reg.find(m.class_name);
        if (!lib) fail("{}: unknown modifier '{}' (available: {})", m.where, m.class_name, reg.available());
        std::string why = params_check(lib->params(), nlohmann::json::parse(m.args.dump()));
        if (!why.empty()) fail("{}: {}: {}", m.where, m.class_name, why);
        libs.push_back(lib);
    }
    // recipe.yaml as llm-compressor saves it (defaults filled in); rendered now so a recipe that
    // cannot be saved fails before the work.
    recipe saved = r;
    for (size_t i = 0; i < saved.modifiers.size(); ++i)
        saved.modifiers[i].args = params_with_defaults(libs[i]->params(), saved.modifiers[i].args);
    const std::string recipe_yaml = recipe_to_yaml(saved);
    const pipeline_kind kind = pipeline_parse(opt.pipeline);
    const at::ScalarType dtype = dtype_parse(opt.dtype);
    const model_config cfg = model_config::load(opt.model);
    pipeline_options popt;
    popt.kind = kind;
    if (!opt.data.path.empty()) {
        dataset_options d = opt.data;
        d.max_seq_length = std::min<int64_t>(d.max_seq_length, cfg.max_position_embeddings);
        popt.batches = dataset_load_for_model(d, cfg.vocab_size, opt.model);
        spdlog::info("calibration: {} samples from {}", popt.batches.size(), d.path);
    }
    output_dir out(opt.output, opt.overwrite); // refuses an existing output before the long work
    run_report report;
    report.phase("load");

    // Lazily: the sequential pipeline holds one decoder layer at a time, spilling each finished
    // layer to a scratch folder inside the staging directory.
    auto model = causal_lm::load(opt.model, dtype, /*lazy=*/true);
    const fs::path scratch = fs::path(out.staging()) / ".llmc-scratch";
    fs::create_directories(scratch);
    popt.scratch_dir = scratch.string();
    popt.release_layers = true;
    popt.activation_budget = opt.activation_budget;
    session s(*model);
    for (size_t i = 0; i < r.modifiers.size(); ++i) s.add_modifier(libs[i], r.modifiers[i].args, r.modifiers[i].where);

    spdlog::debug("loaded: rss {:.1f} MiB, peak {:.1f} MiB", runtime_rss_mib(), runtime_peak_rss_mib());
    report.phase("calibration");
    s.initialize();
    pipeline_run(s, popt);
    s.finalize();
    spdlog::debug("calibrated: rss {:.1f} MiB, peak {:.1f} MiB", runtime_rss_mib(), runtime_peak_rss_mib());
    report.phase("save");

    if (s.schemes().empty()) {
        model->save(out.staging());
    } else {
        const exporter::export_report er = exporter::export_compressed(*model, s.schemes(), out.staging());
        for (const auto &m : er.modules) {
            report.module_bytes(m.module, m.bytes_before, m.bytes_after);
            // Measured on what was written; a plugin's own "error" (reported below) replaces it.
            if (std::isfinite(m.weight_error)) report.module_figure(m.module, "error", m.weight_error);
        }
    }
    std::error_code ec;
    fs::remove_all(scratch, ec);
    if (ec) fail("cannot remove the scratch folder {}: {}", scratch.string(), ec.message());
    const fs::path recipe_path = fs::path(out.staging()) / "recipe.yaml";
    std::ofstream rf(recipe_path);
    rf << recipe_yaml;
    rf.close();
    if (!rf) fail("cannot write {}", recipe_path.string());
    out.copy_side_files(opt.model);
    for (const auto &[module, scheme] : s.schemes()) report.module_scheme(module, scheme_summary(scheme));
    for (const auto &[module, figures] : s.reports())
        for (const auto &[key, value] : figures) report.module_figure(module, key, value);
    report.totals(safetensors_bytes(opt.model), safetensors_bytes(out.staging()));
    report.write((fs::path(out.staging()) / "run_report.json").string());
    spdlog::debug("saved: rss {:.1f} MiB, peak {:.1f} MiB", runtime_rss_mib(), runtime_peak_rss_mib());
    spdlog::info("run report:\n{}", report.table());
    out.commit();
    spdlog::info("wrote {}", opt.output);
}

} // namespace llmc
