// The saved checkpoint computes what the in-memory fake-quantized model computed: quantize with
// the real QuantizationModifier plugin, measure perplexity with fake-quantization on, export to
// compressed-tensors, read it back (weights decompressed; activations and the kv cache
// fake-quantized as its quantization_config says) and measure again.
#include "data/dataset.h"
#include "eval/perplexity.h"
#include "export/compressed_tensors.h"
#include "model/causal_lm.h"
#include "plugin/plugin_registry.h"
#include "recipe/recipe.h"
#include "session/pipeline.h"
#include "session/session.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

using namespace llmc;

namespace {

struct saved_case {
    const char *name;
    const char *modifier; // the QuantizationModifier's arguments, YAML
    bool calibrate;       // static activations or the kv cache need data
};

std::ostream &operator<<(std::ostream &os, const saved_case &c) { return os << c.name; }

struct measured {
    double base = 0, in_memory = 0, from_disk = 0;
    nlohmann::json config; // the saved config.json
};

measured measure(const saved_case &c, const std::string &out) {
    plugin_registry reg;
    reg.scan(LLMC_PLUGIN_DIR);
    recipe r = recipe_parse(std::string("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n") + c.modifier);
    auto model = causal_lm::load(test::stories_dir(), at::kFloat, /*lazy=*/true);
    nlohmann::json ref = nlohmann::json::parse(test::read_file(test::stories_dir() + "/reference_outputs.json"));
    std::vector<int64_t> ids = ref["runs"][0]["ids"];
    perplexity_options po;
    po.seq_len = 64;
    model->layers_onload_all(); // whole-model forwards below
    measured m;
    m.base = perplexity_evaluate(*model, ids, po).perplexity;

    session s(*model);
    s.add_modifier(reg.get("QuantizationModifier"), r.modifiers[0].args, r.modifiers[0].where);
    s.initialize();
    pipeline_options popt;
    popt.kind = pipeline_kind::independent;
    if (c.calibrate) {
        dataset_options d;
        d.path = test::shared_dir() + "/data/tinystories_valid_head.txt";
        d.num_samples = 8;
        d.max_seq_length = 128;
        popt.batches = dataset_load_for_model(d, model->config().vocab_size, test::stories_dir());
    }
    pipeline_run(s, popt);
    s.finalize(); // quantization was enabled at CALIBRATION_END: forwards now fake-quantize
    m.in_memory = perplexity_evaluate(*model, ids, po).perplexity;

    exporter::export_compressed(*model, s.schemes(), out);
    auto saved = causal_lm::load(out, at::kFloat);
    m.from_disk = perplexity_evaluate(*saved, ids, po).perplexity;
    m.config = nlohmann::json::parse(test::read_file(out + "/config.json"));
    return m;
}

class saved_checkpoint : public ::testing::TestWithParam<saved_case> {};

TEST_P(saved_checkpoint, perplexity_equals_the_in_memory_fake_quantized_model) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("saved");
    const measured m = measure(GetParam(), dir / "out");
    EXPECT_NE(m.in_memory, m.base) << "fake-quantization changed nothing";
    EXPECT_NEAR(m.from_disk, m.in_memory, 1e-9 * m.in_memory) << "base " << m.base;
}

INSTANTIATE_TEST_SUITE_P(
    recipes, saved_checkpoint,
    ::testing::Values(
        saved_case{"w4_group4", R"(      ignore: [lm_head]
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 4}
)",
                   false},
        // Dynamic per-token int8 inputs: read back, the inputs must be quantized again.
        saved_case{"w8a8_dynamic", "      ignore: [lm_head]\n      scheme: W8A8\n      targets: [Linear]\n", false},
        // Static per-tensor FP8 inputs and an FP8 kv cache, all calibrated.
        saved_case{"fp8_static_kv", R"(      ignore: [lm_head]
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}
          input_activations: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}
      kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}
)",
                   true},
        // Asymmetric static int8 inputs (zero points saved and read back).
        saved_case{"int8_static_asym", R"(      ignore: [lm_head]
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 8, type: int, strategy: channel, symmetric: true}
          input_activations: {num_bits: 8, type: int, strategy: tensor, dynamic: false, symmetric: false}
)",
                   true},
        // The kv cache alone: only attention changes in the forward pass.
        saved_case{"int8_kv_cache_only", R"(      kv_cache_scheme: {num_bits: 8, type: int, strategy: tensor, dynamic: false, symmetric: true}
)",
                   true}),
    [](const ::testing::TestParamInfo<saved_case> &i) { return std::string(i.param.name); });

// The kv cache scheme reaches config.json and the forward pass: the same weights and inputs with
// and without a 4-bit kv cache give different perplexities, and the saved model agrees.
TEST(saved_checkpoint_kv, a_quantized_kv_cache_changes_attention) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("saved-kv");
    const saved_case kv4{"kv4", "      kv_cache_scheme: {num_bits: 4, type: int, strategy: tensor, dynamic: false, "
                                "symmetric: true}\n",
                         true};
    const measured m = measure(kv4, dir / "out");
    ASSERT_TRUE(m.config["quantization_config"]["kv_cache_scheme"].is_object()) << m.config.dump(2);
    EXPECT_EQ(m.config["quantization_config"]["kv_cache_scheme"]["num_bits"], 4);
    EXPECT_GT(m.in_memory, m.base * 1.001) << "a 4-bit kv cache should cost perplexity";
    EXPECT_NEAR(m.from_disk, m.in_memory, 1e-9 * m.in_memory);

    // A kv strategy the forward pass cannot fake-quantize (attn_head) still loads, with a plain
    // kv cache: this recipe changed nothing else, so the base model's perplexity comes back.
    nlohmann::json cfg = m.config;
    cfg["quantization_config"]["kv_cache_scheme"]["strategy"] = "attn_head";
    test::write_file(dir / "out/config.json", cfg.dump(2));
    auto model = causal_lm::load(dir / "out", at::kFloat);
    nlohmann::json ref = nlohmann::json::parse(test::read_file(test::stories_dir() + "/reference_outputs.json"));
    std::vector<int64_t> ids = ref["runs"][0]["ids"];
    perplexity_options po;
    po.seq_len = 64;
    EXPECT_NEAR(perplexity_evaluate(*model, ids, po).perplexity, m.base, 1e-9 * m.base);
}

} // namespace
