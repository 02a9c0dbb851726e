// llmc-inspect DIR [--json FILE]: the tensors of a checkpoint (name, dtype, shape, min, max,
// absmax), for people and for tests.
#include "io/safetensors.h"
#include "util/error.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

int main(int argc, char **argv) {
    CLI::App app{"llmc-inspect: list a checkpoint's tensors"};
    std::string dir, json_path;
    app.add_option("model", dir, "model directory")->required();
    app.add_option("--json", json_path, "write the listing as JSON");
    CLI11_PARSE(app, argc, argv);
    try {
        llmc::safetensors_model st(dir);
        nlohmann::json out = {{"model", dir}, {"tensors", nlohmann::json::array()}};
        for (const auto &name : st.names()) {
            at::Tensor t = st.tensor(name);
            nlohmann::json row = {{"name", name}, {"dtype", st.info(name).dtype}, {"shape", t.sizes().vec()}};
            if (t.is_floating_point() && t.numel() > 0) {
                at::Tensor f = t.to(at::kDouble);
                row["min"] = f.min().item<double>();
                row["max"] = f.max().item<double>();
                row["absmax"] = f.abs().max().item<double>();
            }
            std::printf("%-60s %-8s %s\n", name.c_str(), row["dtype"].get<std::string>().c_str(), row["shape"].dump().c_str());
            out["tensors"].push_back(row);
        }
        if (!json_path.empty()) std::ofstream(json_path) << out.dump(1) << "\n";
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "llmc-inspect: %s\n", e.what());
        return 1;
    }
}
