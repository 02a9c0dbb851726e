// perplexity_evaluate on tiny random models, against numbers derived by hand or by an independent
// computation: a model whose lm_head is zero predicts the uniform distribution, so its perplexity
// is exactly the vocabulary size and KL(uniform || q) = -log V - mean(log q).
#include "eval/perplexity.h"
#include "test_support.h"
#include "util/error.h"

#include <cmath>

using namespace llmc;

namespace {

constexpr int64_t vocab = 32;

std::unique_ptr<causal_lm> tiny(uint64_t seed, int64_t vocab_size = vocab) {
    nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"hidden_size", 16},
                        {"intermediate_size", 24},
                        {"num_hidden_layers", 2},
                        {"num_attention_heads", 2},
                        {"num_key_value_heads", 1},
                        {"vocab_size", vocab_size},
                        {"max_position_embeddings", 64},
                        {"initializer_range", 0.5}, // peaked predictions: a perplexity well below V
                        {"tie_word_embeddings", false}};
    return causal_lm::random(model_config::from_json(j, "tiny"), seed);
}

std::unique_ptr<causal_lm> uniform_model() {
    auto m = tiny(1);
    m->lm_head().params.at("weight").zero_();
    return m;
}

// Random ids from ATen's generator (tests seed it with at::manual_seed).
std::vector<int64_t> stream(size_t n) {
    at::Tensor t = at::randint(vocab, {static_cast<int64_t>(n)}, at::TensorOptions().dtype(at::kLong));
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

// log-softmax of one window's scored positions, computed apart from the evaluator.
at::Tensor log_probs(causal_lm &m, const std::vector<int64_t> &tokens, int64_t w, int64_t len) {
    at::NoGradGuard g;
    at::Tensor ids = at::tensor(at::ArrayRef<int64_t>(tokens.data() + w * len, len), at::kLong).unsqueeze(0);
    return m.forward(ids)[0].slice(0, 0, len - 1).to(at::kDouble).log_softmax(-1);
}

TEST(perplexity, uniform_model_has_perplexity_vocab_size) {
    at::manual_seed(0);
    auto m = uniform_model();
    const auto tokens = stream(3 * 8 + 5); // 3 windows of 8, 5 tokens dropped
    perplexity_options o;
    o.seq_len = 8;
    const auto r = perplexity_evaluate(*m, tokens, o);
    EXPECT_NEAR(r.perplexity, static_cast<double>(vocab), 1e-9);
    EXPECT_EQ(r.windows, 3);
    EXPECT_EQ(r.tokens, 24);
    EXPECT_EQ(r.predictions, 21);
    EXPECT_FALSE(r.has_base);
}

TEST(perplexity, matches_an_independent_mean_of_window_nlls) {
    at::manual_seed(1);
    auto m = tiny(7);
    const int64_t len = 16;
    const auto tokens = stream(4 * len + len - 1);
    double sum = 0;
    for (int64_t w = 0; w < 4; ++w) {
        at::Tensor targets = at::tensor(at::ArrayRef<int64_t>(tokens.data() + w * len + 1, len - 1), at::kLong);
        sum += at::nll_loss(log_probs(*m, tokens, w, len), targets).item<double>(); // mean over the window
    }
    perplexity_options o;
    o.seq_len = len;
    o.positions_per_chunk = 5; // chunking must not change the result
    const auto r = perplexity_evaluate(*m, tokens, o);
    EXPECT_EQ(r.windows, 4);
    EXPECT_NEAR(r.perplexity, std::exp(sum / 4), 1e-9 * std::exp(sum / 4));
    // Peaked random predictions of random tokens: far from the uniform model's V either way.
    EXPECT_GT(std::abs(r.perplexity - vocab), 1.0);
    o.max_windows = 2;
    EXPECT_EQ(perplexity_evaluate(*m, tokens, o).windows, 2);
}

TEST(perplexity, base_itself_gives_zero_kl_and_full_agreement) {
    at::manual_seed(2);
    auto m = tiny(9);
    const auto tokens = stream(40);
    perplexity_options o;
    o.seq_len = 10;
    const auto r = perplexity_evaluate(*m, tokens, o, m.get());
    ASSERT_TRUE(r.has_base);
    EXPECT_EQ(r.windows, 4);
    EXPECT_NEAR(r.kl_divergence, 0.0, 1e-12);
    EXPECT_EQ(r.top1_agreement, 1.0);
    EXPECT_DOUBLE_EQ(r.base_perplexity, r.perplexity);
}

TEST(perplexity, kl_from_the_uniform_base_by_hand) {
    at::manual_seed(3);
    auto base = uniform_model();
    auto m = tiny(11);
    const int64_t len = 12;
    const auto tokens = stream(2 * len);
    // KL(uniform || q) per position = sum_v (1/V)(log(1/V) - log q_v) = -log V - mean_v log q_v.
    // The uniform model's argmax is token 0 (all logits tie, the first wins).
    double kl = 0, agree = 0;
    for (int64_t w = 0; w < 2; ++w) {
        at::Tensor lq = log_probs(*m, tokens, w, len);
        kl += (-std::log(static_cast<double>(vocab)) - lq.mean(-1)).sum().item<double>();
        agree += lq.argmax(-1).eq(0).sum().item<double>();
    }
    perplexity_options o;
    o.seq_len = len;
    const auto r = perplexity_evaluate(*m, tokens, o, base.get());
    EXPECT_NEAR(r.kl_divergence, kl / 22, 1e-9);
    EXPECT_GT(r.kl_divergence, 0.01);
    EXPECT_DOUBLE_EQ(r.top1_agreement, agree / 22);
    EXPECT_NEAR(r.base_perplexity, static_cast<double>(vocab), 1e-9);
}

TEST(perplexity, errors) {
    auto m = tiny(1);
    perplexity_options o;
    o.seq_len = 8;
    auto message = [&](const std::vector<int64_t> &tokens, causal_lm *base) -> std::string {
        try {
            perplexity_evaluate(*m, tokens, o, base);
        } catch (const llmc::error &e) {
            return e.what();
        }
        return "";
    };
    EXPECT_NE(message(std::vector<int64_t>(7, 1), nullptr).find("7 tokens, fewer than one window of 8"),
              std::string::npos);
    EXPECT_NE(message(std::vector<int64_t>(8, vocab), nullptr).find("token id 32 outside the vocabulary [0, 32)"),
              std::string::npos);
    auto other = tiny(1, 48);
    EXPECT_NE(message(std::vector<int64_t>(8, 1), other.get()).find("vocabulary (48) differs from the model's (32)"),
              std::string::npos);
    m->lm_head().params.at("weight").fill_(std::nan(""));
    EXPECT_NE(message(std::vector<int64_t>(8, 1), nullptr).find("window 0 (tokens 0..8): the model's logits are not finite"),
              std::string::npos);
    o.seq_len = 1;
    EXPECT_NE(message(std::vector<int64_t>(8, 1), nullptr).find("at least 2 tokens"), std::string::npos);
}

} // namespace
