// Calibration pipelines, as llm-compressor's (reference section 4): sequential, basic, datafree,
// and independent (each modifier alone, sequential if it needs data, else datafree).
#pragma once

#include <ATen/ATen.h>

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
    // Called after a decoder layer's propagation pass (the saver writes and releases it there).
    std::function<void(size_t layer)> on_layer_done;
};

// Runs CALIBRATION_START .. CALIBRATION_END for the session's modifiers (initialize and finalize
// are the caller's). Throws llmc::error when a modifier needs data and there is none.
void pipeline_run(session &s, const pipeline_options &opt);

} // namespace llmc
