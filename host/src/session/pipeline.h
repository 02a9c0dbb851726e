// Calibration pipelines, as llm-compressor's (reference section 4): sequential, basic, datafree,
// and independent (each modifier alone, sequential if it needs data, else datafree).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llmc {

class session;
class modifier_instance;

enum class pipeline_kind { independent, sequential, basic, datafree };

pipeline_kind pipeline_parse(const std::string &name); // throws listing the valid names
const char *pipeline_name(pipeline_kind k);

struct pipeline_options {
    pipeline_kind kind = pipeline_kind::independent;
    // Calibration batches: int64 input ids [batch, seq].
    std::vector<at::Tensor> batches;
    // Sequential pipeline: calibration activations kept in memory up to this many bytes, the
    // rest in a scratch file.
    uint64_t activation_budget = uint64_t(4) << 30;
    // Scratch files (spilled layers and activations) go here; must exist when set. Empty: the
    // system's temporary directory.
    std::string scratch_dir;
    // Sequential pipeline: spill each finished layer to the scratch directory and release it, so
    // memory holds one layer (the model must have been loaded lazily, or have a checkpoint).
    bool release_layers = false;
};

// Runs CALIBRATION_START .. CALIBRATION_END for the session's modifiers (initialize and finalize
// are the caller's). Throws llmc::error when a modifier needs data and there is none.
void pipeline_run(session &s, const pipeline_options &opt);

} // namespace llmc
