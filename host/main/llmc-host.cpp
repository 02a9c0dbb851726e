// llmc-host: compress a Hugging Face checkpoint with a recipe and modifiers loaded from plugins.
#include "app/oneshot.h"
#include "plugin/plugin_registry.h"
#include "util/error.h"
#include "util/runtime.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>

namespace {

int list_plugins(const llmc::plugin_registry &reg) {
    for (const auto &lib : reg.all())
        std::printf("%-28s %-8s %s\n    %s\n", lib->name().c_str(), lib->version().c_str(), lib->path().c_str(),
                    lib->description().c_str());
    for (const auto &f : reg.failures()) std::printf("BROKEN %s\n    %s\n", f.path.c_str(), f.reason.c_str());
    return 0;
}

int describe(const llmc::plugin_registry &reg, const std::string &name) {
    auto lib = reg.get(name);
    std::printf("%s %s (%s)\n%s\n\nparameters:\n", lib->name().c_str(), lib->version().c_str(), lib->path().c_str(),
                lib->description().c_str());
    for (const auto &p : lib->params()) {
        std::string extra;
        if (p.value("required", false)) extra += " required";
        if (p.contains("choices")) extra += " choices=" + p["choices"].dump();
        if (p.contains("minimum")) extra += " min=" + p["minimum"].dump();
        if (p.contains("maximum")) extra += " max=" + p["maximum"].dump();
        if (p.contains("exclusive_minimum")) extra += " greater_than=" + p["exclusive_minimum"].dump();
        std::printf("  %-28s %-12s default=%s%s\n      %s\n", p.value("name", "").c_str(), p.value("type", "").c_str(),
                    p.value("default", nlohmann::json()).dump().c_str(), extra.c_str(),
                    p.value("description", "").c_str());
    }
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    CLI::App app{"llmc-host: compress LLMs with recipes and modifier plugins"};
    llmc::oneshot_options opt;
    std::string log_level = "info", describe_name;
    bool list = false;
    int threads = 0;
    app.add_option("--plugins", opt.plugin_dirs, "directory of modifier plugins (repeatable)")->required();
    app.add_flag("--list-plugins", list, "list the plugins found and exit");
    app.add_option("--describe", describe_name, "describe a modifier's parameters and exit");
    app.add_option("--recipe", opt.recipe, "llm-compressor recipe (YAML)");
    app.add_option("--model", opt.model, "Hugging Face model directory");
    app.add_option("--dataset", opt.data.path, "calibration data: plain text (one stream cut into --max-seq-length chunks), JSONL with a text field, or JSONL with input_ids");
    app.add_option("--output", opt.output, "output directory");
    app.add_flag("--overwrite", opt.overwrite, "replace an existing output directory");
    app.add_option("--pipeline", opt.pipeline, "independent (default), sequential, basic, datafree");
    app.add_option("--dtype", opt.dtype, "compute dtype: float32 (default) or bfloat16");
    app.add_option("--num-calibration-samples", opt.data.num_samples, "default 512");
    app.add_option("--max-seq-length", opt.data.max_seq_length, "default 2048, capped by the model");
    app.add_option("--text-column", opt.data.text_column, "the text field of JSONL rows (default text)");
    app.add_flag("--shuffle", opt.data.shuffle, "shuffle calibration samples");
    app.add_option("--seed", opt.data.seed, "shuffle seed (default 42)");
    app.add_option("--threads", threads, "intra-op threads (default: all cores)");
    std::string budget = "4G";
    app.add_option("--activation-budget", budget,
                   "calibration activations kept in memory (bytes, or with K/M/G suffix; default 4G); the rest "
                   "spill to disk");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        llmc::runtime_exit(app.exit(e)); // --help too: nothing of a run exists yet
    }

    try {
        llmc::runtime_init_memory();
        llmc::runtime_init_logging(log_level);
        llmc::runtime_set_threads(threads);
        llmc::runtime_install_signal_handlers();
        if (list || !describe_name.empty()) {
            llmc::plugin_registry reg;
            for (const auto &d : opt.plugin_dirs) reg.scan(d);
            return list ? list_plugins(reg) : describe(reg, describe_name);
        }
        opt.activation_budget = llmc::parse_bytes(budget, "--activation-budget");
        if (opt.recipe.empty() || opt.model.empty() || opt.output.empty())
            throw llmc::error("--recipe, --model and --output are required (or --list-plugins / --describe)");
        llmc::runtime_check_blas();
        llmc::oneshot_run(opt);
        llmc::runtime_exit(0); // the run's objects are gone; LibTorch's static teardown is not needed
    } catch (const std::exception &e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}
