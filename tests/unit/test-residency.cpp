// Bounded memory: lazily loaded decoder layers, spilling and releasing them, and the activation
// cache that spills past its budget.
#include "io/safetensors.h"
#include "model/causal_lm.h"
#include "session/activation_cache.h"
#include "test_support.h"
#include "util/error.h"

using namespace llmc;

namespace {

model_config tiny_config(int layers = 3) {
    return model_config::from_json({{"architectures", {"LlamaForCausalLM"}},
                                    {"hidden_size", 32},
                                    {"intermediate_size", 48},
                                    {"num_hidden_layers", layers},
                                    {"num_attention_heads", 4},
                                    {"num_key_value_heads", 2},
                                    {"vocab_size", 64},
                                    {"max_position_embeddings", 64}});
}

at::Tensor run_layers(causal_lm &m, const at::Tensor &ids) {
    at::Tensor h = m.embed(ids);
    for (size_t i = 0; i < m.num_layers(); ++i) h = m.layer_forward(i, h);
    return m.head(h);
}

} // namespace

TEST(activation_cache, spills_past_the_budget_and_reads_back) {
    test::temp_dir dir("act");
    const int64_t one = 2 * 5 * 8 * 4; // bytes of a [2,5,8] float tensor
    activation_cache c(static_cast<uint64_t>(one), dir / "spill.bin");
    std::vector<at::Tensor> want;
    for (int i = 0; i < 4; ++i) {
        want.push_back(at::randn({2, 5 + i * 0, 8}));
        c.push(want.back());
    }
    EXPECT_EQ(c.memory_bytes(), static_cast<uint64_t>(one));
    EXPECT_EQ(c.spilled_bytes(), static_cast<uint64_t>(3 * one));
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(at::equal(c.get(i), want[i])) << i;
    at::Tensor repl = at::randn({2, 5, 8});
    c.set(2, repl);
    EXPECT_TRUE(at::equal(c.get(2), repl));
    EXPECT_TRUE(at::equal(c.get(3), want[3]));
    EXPECT_THROW(c.set(1, at::randn({2, 6, 8})), error);
}

TEST(residency, lazy_layers_load_on_demand_and_match_the_eager_model) {
    test::temp_dir dir("lazy");
    auto eager = causal_lm::random(tiny_config(), 7);
    eager->save(dir / "m");
    auto lazy = causal_lm::load(dir / "m", at::kFloat, true);
    for (size_t i = 0; i < lazy->num_layers(); ++i) EXPECT_FALSE(lazy->layer_resident(i));
    at::Tensor ids = at::randint(0, 64, {1, 6}, at::kLong);
    EXPECT_THROW(lazy->layer_forward(0, lazy->embed(ids)), error) << "a released layer has no weights";
    lazy->layers_onload_all();
    EXPECT_TRUE(at::allclose(run_layers(*lazy, ids), run_layers(*eager, ids)));
}

TEST(residency, spill_release_onload_keeps_changes_and_buffers) {
    test::temp_dir dir("spill");
    auto eager = causal_lm::random(tiny_config(), 3);
    eager->save(dir / "m");
    auto m = causal_lm::load(dir / "m", at::kFloat, true);
    m->layer_onload(1);
    module *q = m->find("model.layers.1.self_attn.q_proj");
    ASSERT_NE(q, nullptr);
    q->params["weight"].mul_(0.5);
    q->buffers["weight_scale"] = at::full({32, 1}, 0.25);
    at::Tensor changed = q->params["weight"].clone();
    m->layer_spill(1, dir / "layer1.safetensors");
    m->layer_release(1);
    EXPECT_FALSE(m->layer_resident(1));
    EXPECT_TRUE(q->params["weight"].is_meta());
    EXPECT_TRUE(q->buffers.empty());
    m->layer_onload(1);
    EXPECT_TRUE(at::equal(q->params["weight"], changed));
    ASSERT_EQ(q->buffers.count("weight_scale"), 1u);
    EXPECT_TRUE(at::equal(q->buffers["weight_scale"], at::full({32, 1}, 0.25)));
    // Saving streams every layer, released or not, with the change and the buffer.
    m->layer_release(1);
    m->save(dir / "out");
    safetensors_model out(dir / "out");
    EXPECT_TRUE(at::equal(out.tensor("model.layers.1.self_attn.q_proj.weight"), changed));
    EXPECT_TRUE(at::equal(out.tensor("model.layers.1.self_attn.q_proj.weight_scale"), at::full({32, 1}, 0.25)));
    EXPECT_TRUE(at::equal(out.tensor("model.layers.2.mlp.up_proj.weight"),
                          eager->find("model.layers.2.mlp.up_proj")->params["weight"]));
    EXPECT_FALSE(m->layer_resident(2)) << "saving does not leave layers in memory";
}
