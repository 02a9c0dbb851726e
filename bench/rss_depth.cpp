// Peak host memory against model depth: the sequential pipeline must hold one decoder layer, not
// the model. For 4-, 8- and 16-layer random models it runs llmc-host (sequential, layers spilled
// and released) and, as the baseline in the same run, the basic pipeline (whole model in memory),
// and prints each run's peak RSS against the model's size.
//   bench-rss-depth [--hidden N] [--intermediate N] [--samples N] [--seq N]
#include "child_process.h"
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Runs argv (stdout discarded), returns the child's peak RSS in MiB (-1 on failure).
double run_peak_rss_mib(const std::vector<std::string> &args) {
    const llmc_bench::child_result r = llmc_bench::run_child(args, "/dev/null", /*with_stderr=*/false);
    return r.ok ? r.peak_rss_mib : -1;
}

uint64_t dir_bytes(const fs::path &d) {
    uint64_t n = 0;
    for (const auto &e : fs::recursive_directory_iterator(d))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") n += e.file_size();
    return n;
}

} // namespace

int main(int argc, char **argv) {
    int hidden = 1024, intermediate = 2816, samples = 16, seq = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        int v = std::atoi(argv[i + 1]);
        if (k == "--hidden") hidden = v;
        else if (k == "--intermediate") intermediate = v;
        else if (k == "--samples") samples = v;
        else if (k == "--seq") seq = v;
    }
    const fs::path work = fs::temp_directory_path() / ("llmc-bench-rss-" + std::to_string(getpid()));
    fs::create_directories(work);
    {
        std::mt19937 rng(1);
        std::ofstream data(work / "calib.jsonl");
        for (int s = 0; s < samples; ++s) {
            std::vector<int> ids;
            for (int t = 0; t < seq; ++t) ids.push_back(static_cast<int>(rng() % 1024));
            data << nlohmann::json{{"input_ids", ids}}.dump() << "\n";
        }
        std::ofstream(work / "recipe.yaml") << "s_stage:\n  g_modifiers:\n    ServicesProbeModifier:\n"
                                               "      light: true\n";
    }
    std::printf("hidden %d, intermediate %d, %d samples x %d tokens; peak RSS in MiB\n", hidden, intermediate, samples,
                seq);
    std::printf("%7s %12s %16s %16s %12s\n", "layers", "model MiB", "sequential MiB", "basic (baseline)", "seq/basic");
    for (int layers : {4, 8, 16}) {
        const fs::path model = work / ("model-" + std::to_string(layers));
        std::string cmd = std::string(LLMC_MAKE_MODEL_EXE) + " --layers " + std::to_string(layers) + " --hidden " +
                          std::to_string(hidden) + " --intermediate " + std::to_string(intermediate) +
                          " --heads 16 --kv-heads 16 --vocab 1024 --context 1024 --output " + model.string() +
                          " > /dev/null";
        if (std::system(cmd.c_str()) != 0) return 1;
        double rss[2];
        const char *pipes[2] = {"sequential", "basic"};
        for (int p = 0; p < 2; ++p) {
            fs::remove_all(work / "out");
            rss[p] = run_peak_rss_mib({LLMC_HOST_EXE, "--plugins", LLMC_TEST_PLUGIN_DIR, "--recipe",
                                       (work / "recipe.yaml").string(), "--model", model.string(), "--dataset",
                                       (work / "calib.jsonl").string(), "--output", (work / "out").string(),
                                       "--pipeline", pipes[p], "--log-level", "error"});
        }
        std::printf("%7d %12.1f %16.1f %16.1f %12.2f\n", layers, dir_bytes(model) / 1048576.0, rss[0], rss[1],
                    rss[0] / rss[1]);
        fs::remove_all(model);
    }
    fs::remove_all(work);
    return 0;
}
