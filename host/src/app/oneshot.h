// The whole oneshot run behind llmc-host: plugins, recipe, model, data, lifecycle, save.
#pragma once

#include "data/dataset.h"

#include <cstdint>
#include <string>
#include <vector>

namespace llmc {

struct oneshot_options {
    std::vector<std::string> plugin_dirs;
    std::string recipe;
    std::string model;
    std::string output;
    dataset_options data; // data.path empty: no calibration data
    std::string pipeline = "independent";
    std::string dtype = "float32";
    uint64_t activation_budget = uint64_t(4) << 30; // bytes of calibration activations kept in memory
    bool overwrite = false;
};

// Throws llmc::error on any failure; the output path is then left as it was.
void oneshot_run(const oneshot_options &opt);

} // namespace llmc
