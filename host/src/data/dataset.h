// Calibration data: samples of token ids ready for the pipelines.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llmc {

struct dataset_options {
    std::string path;
    std::string text_column = "text";
    int64_t num_samples = 512;
    int64_t max_seq_length = 2048;
    bool shuffle = false;
    uint64_t seed = 42;
};

// JSONL rows with an `input_ids` list (already tokenized). One sample per row, truncated to
// max_seq_length. Empty files, malformed rows and ids outside [0, vocab) are errors naming the
// line. Returns [1, seq] int64 tensors.
std::vector<at::Tensor> dataset_load_ids(const dataset_options &opt, int64_t vocab_size);

} // namespace llmc
