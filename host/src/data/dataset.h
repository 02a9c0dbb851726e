// Calibration and evaluation data from `--dataset FILE`. Three formats, told apart by the file
// name and, for JSONL, by the first row:
//   - plain text: any name not ending in .jsonl / .json;
//   - JSONL rows with a text field (`text_column`, "text" by default);
//   - JSONL rows with `input_ids` (already tokenized; wins over the text field when both exist).
// Errors say what is wrong and where ("dataset FILE:LINE: ...").
#pragma once

#include "tokenizer/tokenizer.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmc {

struct dataset_options {
    std::string path;
    std::string text_column = "text";
    int64_t num_samples = 512;
    int64_t max_seq_length = 2048; // the caller caps it by the model
    bool shuffle = false;
    uint64_t seed = 42;
};

enum class dataset_format { plain_text, jsonl_text, jsonl_ids };

// The file's format: by name, then by the first non-blank JSONL row. Throws when the file cannot
// be read, or the first row is malformed or has neither field.
dataset_format dataset_detect(const std::string &path, const std::string &text_column = "text");
inline bool dataset_needs_tokenizer(const dataset_options &opt) {
    return dataset_detect(opt.path, opt.text_column) != dataset_format::jsonl_ids;
}

// Calibration samples, [1, seq] int64 tensors, at most num_samples of them:
//   - plain text: the whole file tokenized as one stream (add_special_tokens: BOS once at the start
//     when the tokenizer adds it), cut into max_seq_length chunks, the last partial chunk dropped;
//     fewer tokens than one chunk is an error;
//   - JSONL text: one sample per row, encode(text, add_special_tokens = true) truncated to
//     max_seq_length; blank rows are skipped (their count is logged);
//   - JSONL input_ids: one sample per row, truncated to max_seq_length.
// shuffle: samples (chunks or rows) in a seeded order (Fisher-Yates over std::mt19937_64, the same
// on every platform) before the first num_samples are kept. JSONL is streamed: memory follows the
// samples kept, not the file (without shuffle, reading stops once num_samples rows are found).
// tok may be null when the file holds input_ids; text without a tokenizer is an error.
// Every id must lie in [0, vocab_size).
std::vector<at::Tensor> dataset_load(const dataset_options &opt, int64_t vocab_size, const tokenizer *tok);

// The same, loading the tokenizer from model_dir only when the file holds text.
inline std::vector<at::Tensor> dataset_load_for_model(const dataset_options &opt, int64_t vocab_size,
                                                      const std::string &model_dir) {
    std::unique_ptr<tokenizer> tok;
    if (dataset_needs_tokenizer(opt)) tok = tokenizer::load(model_dir);
    return dataset_load(opt, vocab_size, tok.get());
}

// The former entry point (input_ids JSONL only; text is an error asking for the tokenizer).
inline std::vector<at::Tensor> dataset_load_ids(const dataset_options &opt, int64_t vocab_size) {
    return dataset_load(opt, vocab_size, nullptr);
}

// The whole file as one token stream, for perplexity: plain text tokenized at once with
// add_special_tokens (BOS once at the start when the tokenizer adds it); JSONL text rows joined
// with "\n\n" first (every row, blank ones too, as the GPTQ wikitext2 evaluation joins them);
// JSONL input_ids rows concatenated. tok may be null for input_ids.
std::vector<int64_t> dataset_token_stream(const std::string &path, int64_t vocab_size, const tokenizer *tok,
                                          const std::string &text_column = "text");

} // namespace llmc
