// The saved checkpoint computes what the in-memory fake-quantized model computed: quantize with
// the real QuantizationModifier plugin, measure perplexity with fake-quantization on, export to
// compressed-tensors, read it back (decompressed) and measure again.
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

TEST(saved_checkpoint, perplexity_equals_the_in_memory_fake_quantized_model) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("saved");
    plugin_registry reg;
    reg.scan(LLMC_PLUGIN_DIR);
    recipe r = recipe_parse(R"(quant_stage:
  quant_modifiers:
    QuantizationModifier:
      ignore: [lm_head]
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 4}
)");
    auto model = causal_lm::load(test::stories_dir(), at::kFloat, /*lazy=*/true);
    nlohmann::json ref = nlohmann::json::parse(test::read_file(test::stories_dir() + "/reference_outputs.json"));
    std::vector<int64_t> ids = ref["runs"][0]["ids"];
    perplexity_options po;
    po.seq_len = 64;
    model->layers_onload_all(); // whole-model forwards below
    const double base = perplexity_evaluate(*model, ids, po).perplexity;

    session s(*model);
    s.add_modifier(reg.get("QuantizationModifier"), r.modifiers[0].args, r.modifiers[0].where);
    s.initialize();
    pipeline_options popt;
    popt.kind = pipeline_kind::independent;
    pipeline_run(s, popt);
    s.finalize(); // quantization was enabled at CALIBRATION_END: forwards now fake-quantize
    const double in_memory = perplexity_evaluate(*model, ids, po).perplexity;
    EXPECT_NE(in_memory, base) << "fake-quantization changed nothing";

    exporter::export_compressed(*model, s.schemes(), dir / "out");
    auto saved = causal_lm::load(dir / "out", at::kFloat);
    const double from_disk = perplexity_evaluate(*saved, ids, po).perplexity;
    EXPECT_NEAR(from_disk, in_memory, 1e-9 * in_memory) << "base " << base;
}
