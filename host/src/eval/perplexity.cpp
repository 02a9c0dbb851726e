#include "eval/perplexity.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>

namespace llmc {

namespace {

// Sums over one window's scored positions (0..seq_len-2 predicting 1..seq_len-1).
struct window_sums {
    double nll = 0, base_nll = 0, kl = 0;
    int64_t agree = 0;
};

window_sums score_window(const at::Tensor &logits, const at::Tensor &base_logits, const at::Tensor &targets,
                         int64_t chunk) {
    window_sums s;
    const int64_t n = targets.size(0);
    for (int64_t p = 0; p < n; p += chunk) {
        const int64_t e = std::min(n, p + chunk);
        // float64 log-softmax: the KL of two nearly equal models is a difference of close numbers.
        const at::Tensor lq = logits.slice(0, p, e).to(at::kDouble).log_softmax(-1);
        const at::Tensor t = targets.slice(0, p, e).unsqueeze(1);
        s.nll -= lq.gather(1, t).sum().item<double>();
        if (!base_logits.defined()) continue;
        const at::Tensor lp = base_logits.slice(0, p, e).to(at::kDouble).log_softmax(-1);
        s.base_nll -= lp.gather(1, t).sum().item<double>();
        s.kl += (lp.exp() * (lp - lq)).sum().item<double>();
        s.agree += at::eq(logits.slice(0, p, e).argmax(-1), base_logits.slice(0, p, e).argmax(-1)).sum().item<int64_t>();
    }
    return s;
}

} // namespace

perplexity_result perplexity_evaluate(causal_lm &model, const std::vector<int64_t> &tokens,
                                      const perplexity_options &opt, causal_lm *base) {
    const int64_t len = opt.seq_len;
    if (len < 2) fail("perplexity: the window length must be at least 2 tokens (got {})", len);
    const int64_t vocab = model.config().vocab_size;
    if (base != nullptr && base->config().vocab_size != vocab)
        fail("perplexity: the base model's vocabulary ({}) differs from the model's ({}); they must share the "
             "tokenizer",
             base->config().vocab_size, vocab);
    int64_t windows = static_cast<int64_t>(tokens.size()) / len;
    if (windows == 0)
        fail("perplexity: {} tokens, fewer than one window of {} (lower --max-seq-length or use more text)",
             tokens.size(), len);
    if (opt.max_windows > 0) windows = std::min(windows, opt.max_windows);
    const auto used_end = tokens.begin() + windows * len;
    const auto [lo, hi] = std::minmax_element(tokens.begin(), used_end);
    if (*lo < 0 || *hi >= vocab) fail("perplexity: token id {} outside the vocabulary [0, {})", *lo < 0 ? *lo : *hi, vocab);

    at::NoGradGuard no_grad;
    const int64_t chunk = std::max<int64_t>(1, opt.positions_per_chunk);
    double nll = 0, base_nll = 0, kl = 0;
    int64_t agree = 0;
    for (int64_t w = 0; w < windows; ++w) {
        const at::Tensor ids =
            at::tensor(at::ArrayRef<int64_t>(tokens.data() + w * len, len), at::kLong).unsqueeze(0);
        const at::Tensor targets = ids[0].slice(0, 1, len);
        // Position len-1 predicts a token outside the window: not scored.
        const at::Tensor logits = model.forward(ids)[0].slice(0, 0, len - 1);
        const at::Tensor base_logits = base ? base->forward(ids)[0].slice(0, 0, len - 1) : at::Tensor();
        const window_sums s = score_window(logits, base_logits, targets, chunk);
        if (!std::isfinite(s.nll))
            fail("perplexity: window {} (tokens {}..{}): the model's logits are not finite", w, w * len,
                 (w + 1) * len);
        if (base && !std::isfinite(s.base_nll))
            fail("perplexity: window {} (tokens {}..{}): the base model's logits are not finite", w, w * len,
                 (w + 1) * len);
        nll += s.nll / static_cast<double>(len - 1);
        base_nll += s.base_nll / static_cast<double>(len - 1);
        kl += s.kl;
        agree += s.agree;
        if (opt.on_window) opt.on_window(w + 1, windows);
    }

    perplexity_result r;
    r.windows = windows;
    r.tokens = windows * len;
    r.predictions = windows * (len - 1);
    r.perplexity = std::exp(nll / static_cast<double>(windows));
    if (base) {
        r.has_base = true;
        r.base_perplexity = std::exp(base_nll / static_cast<double>(windows));
        r.kl_divergence = kl / static_cast<double>(r.predictions);
        r.top1_agreement = static_cast<double>(agree) / static_cast<double>(r.predictions);
    }
    return r;
}

} // namespace llmc
