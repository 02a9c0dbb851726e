// Perplexity as the GPTQ / SparseGPT / Wanda / AWQ / SmoothQuant papers measure it
// (reference/algorithms.md section 9): one token stream, non-overlapping windows of seq_len
// tokens, the last partial window dropped; per window the mean cross-entropy of positions
// 1..seq_len-1 predicted from what precedes them; perplexity = exp(mean of the window means).
// Optionally against a base model on the same windows: KL(base || model) and top-1 agreement.
#pragma once

#include "model/causal_lm.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace llmc {

struct perplexity_options {
    int64_t seq_len = 2048;
    int64_t max_windows = 0; // 0: every complete window
    // Positions per float64 log-softmax: bounds the extra memory on large vocabularies.
    int64_t positions_per_chunk = 512;
    // Called after each window (done, total), for progress.
    std::function<void(int64_t, int64_t)> on_window;
};

struct perplexity_result {
    int64_t windows = 0;
    int64_t tokens = 0;      // windows * seq_len
    int64_t predictions = 0; // windows * (seq_len - 1): the positions scored
    double perplexity = 0;
    bool has_base = false;
    double base_perplexity = 0;
    double kl_divergence = 0;  // KL(base || model) in nats, mean over the scored positions
    double top1_agreement = 0; // fraction of scored positions whose argmax agrees
};

// tokens: the whole stream (ids in [0, vocab)). Runs under at::NoGradGuard, one window at a time.
// base, when given, must have the model's vocabulary size. Throws when the stream holds fewer
// than seq_len tokens or a window's logits are not finite.
perplexity_result perplexity_evaluate(causal_lm &model, const std::vector<int64_t> &tokens,
                                      const perplexity_options &opt, causal_lm *base = nullptr);

} // namespace llmc
