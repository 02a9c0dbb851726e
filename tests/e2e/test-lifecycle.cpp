// The whole oneshot run through the real llmc-host on the real stories260K model, with the
// services probe plugin: the exact callbacks it sees in each pipeline, what every host service
// did, and that the weights it changed are the weights saved.
#include "io/safetensors.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

using namespace llmc;
using json = nlohmann::json;

namespace {

// Four calibration samples of real token ids (the reference greedy continuations).
std::string write_dataset(const test::temp_dir &dir) {
    json ref = json::parse(test::read_file(test::stories_dir() + "/reference_outputs.json"));
    std::vector<int64_t> a = ref["runs"][0]["ids"], b = ref["runs"][1]["ids"];
    std::ostringstream rows;
    auto row = [&](const std::vector<int64_t> &v, size_t from, size_t n) {
        rows << json{{"input_ids", std::vector<int64_t>(v.begin() + from, v.begin() + std::min(v.size(), from + n))}}.dump()
             << "\n";
    };
    row(a, 0, 64);
    row(a, 64, 64);
    row(a, 128, 64);
    row(b, 0, 64);
    const std::string path = dir / "calib.jsonl";
    test::write_file(path, rows.str());
    return path;
}

struct run_result {
    test::command_result cmd;
    std::vector<std::string> trace;
    json report;
};

run_result run_probe(const test::temp_dir &dir, const std::string &fields, const std::string &pipeline,
                     bool with_data = true, const std::string &extra_args = "") {
    const std::string recipe = dir / ("recipe-" + pipeline + ".yaml");
    test::write_file(recipe, "probe_stage:\n  probe_modifiers:\n    ServicesProbeModifier:\n      trace_path: " +
                                 (dir / ("trace-" + pipeline)) + "\n      report_path: " + (dir / ("report-" + pipeline)) +
                                 "\n" + fields);
    std::string cmd = std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_TEST_PLUGIN_DIR + " --recipe " + recipe +
                      " --model " + test::stories_dir() + " --output " + (dir / ("out-" + pipeline)) +
                      " --pipeline " + pipeline + " --log-level warn" + extra_args;
    if (with_data) cmd += " --dataset " + write_dataset(dir);
    run_result r;
    r.cmd = test::run_command(cmd);
    std::istringstream t(test::read_file(dir / ("trace-" + pipeline)));
    for (std::string line; std::getline(t, line);) r.trace.push_back(line);
    r.report = json::parse(test::read_file(dir / ("report-" + pipeline)), nullptr, false);
    return r;
}

std::vector<std::string> expected_trace(int subgraphs, bool training = false) {
    std::vector<std::string> t = {"on_initialize"};
    if (training) t.push_back("on_start:BATCH_START");
    auto ev = [&](const std::string &e, const std::string &hook) {
        t.push_back("on_event:" + e);
        t.push_back(hook);
        if (training) t.push_back("on_update:" + e.substr(0, e.find(':')));
    };
    ev("CALIBRATION_START", "on_calibration_start");
    for (int i = 0; i < subgraphs; ++i) {
        const std::string s = std::to_string(i) + "/" + std::to_string(subgraphs);
        ev("SEQUENTIAL_EPOCH_END:" + s, "on_sequential_epoch_end:" + s);
    }
    ev("CALIBRATION_END", "on_calibration_end");
    t.push_back("on_finalize");
    return t;
}

} // namespace

TEST(lifecycle, independent_oneshot_exact_callback_order_and_services) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("life");
    // W8A8: per-channel int8 weights fit every width of the model (W4A16's groups of 128 do not).
    auto r = run_probe(dir, "      quantize: true\n      scheme: W8A8\n", "independent");
    ASSERT_EQ(r.cmd.exit_code, 0) << r.cmd.output;
    // needs_data (default true): the independent pipeline runs it sequentially, one subgraph per layer.
    EXPECT_EQ(r.trace, expected_trace(5));

    const json &rep = r.report;
    ASSERT_FALSE(rep.is_discarded());
    EXPECT_EQ(rep["host_name"], "llmc-host");
    EXPECT_EQ(rep["root_class"], "LlamaForCausalLM");
    // root, model, embed_tokens, layers, 5 x 13 (layer, attn, 4 proj, mlp, 3 proj, act_fn, 2 norms),
    // norm, rotary_emb, lm_head
    EXPECT_EQ(rep["module_count"], 4 + 5 * 13 + 3);
    EXPECT_EQ(rep["unknown_module_error"], "NOT_FOUND");
    EXPECT_EQ(rep["extension_unknown_is_null"], true);
    EXPECT_EQ(rep["cancelled"], false);
    EXPECT_EQ(rep["matched"].size(), 35u) << "7 Linear per layer, lm_head ignored";
    EXPECT_EQ(rep["matched"][0], "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(rep["scheme"]["weights"]["num_bits"], 8);
    EXPECT_EQ(rep["scheme"]["weights"]["strategy"], "channel");
    EXPECT_EQ(rep["scheme_get_matches"], true);
    EXPECT_EQ(rep["scheme_get_unattached_empty"], true);
    // Weight qparams left to the host are stored, when next looked at, as an eager observe stores them.
    EXPECT_EQ(rep["defer_taken"], true);
    EXPECT_EQ(rep["defer_settles_as_eager"], true);
    EXPECT_EQ(rep["defer_unattached"], "NOT_FOUND");
    // Weight qparams the host observes and stores are those of an eager observe-and-store.
    EXPECT_EQ(rep["store_set"], json::array({"model.layers.0.self_attn.q_proj"}));
    EXPECT_EQ(rep["store_taken"], true);
    EXPECT_EQ(rep["store_as_eager"], true);
    EXPECT_EQ(rep["store_twice"], "INVALID_ARG");
    EXPECT_EQ(rep["store_unattached"], "NOT_FOUND");
    // Hooks fire in the calibration pass only (4 batches), never in the propagation pass, and a
    // removed hook never fires.
    for (const auto &m : rep["matched"]) {
        EXPECT_EQ(rep["pre_calls"][m.get<std::string>()], 4) << m;
        EXPECT_EQ(rep["post_calls"][m.get<std::string>()], 4) << m;
    }
    EXPECT_EQ(rep["removed_hook_calls"], 0);
    // Replay reproduces the hooks' outputs, honours overrides, restores the weights.
    ASSERT_EQ(rep["epochs"].size(), 5u);
    for (const auto &e : rep["epochs"]) {
        EXPECT_EQ(e["batches"], 4);
        int checked = 0;
        for (auto it = e.begin(); it != e.end(); ++it) {
            if (!it.value().is_object()) continue;
            EXPECT_EQ(it.value()["replay_equal"], true) << it.key();
            EXPECT_EQ(it.value()["replay_override_zero"], true) << it.key();
            EXPECT_EQ(it.value()["restored"], true) << it.key();
            ++checked;
        }
        EXPECT_EQ(checked, 7);
    }
    EXPECT_EQ(rep["replay_outside_epoch"], "UNAVAILABLE");
    EXPECT_EQ(rep["buffer_roundtrip"], true);
    EXPECT_EQ(rep["params_of_first"], json::array({"weight"}));
    EXPECT_EQ(rep["quantized"].size(), 35u);
    EXPECT_GT(rep["max_quant_error"].get<double>(), 0.0);

    // The checkpoint is compressed-tensors int-quantized (W8A8): int8 weights with the per-channel
    // scales the probe stored, and the weights it fake-quantized land exactly on the int8 grid.
    safetensors_file st(dir / "out-independent/model.safetensors");
    EXPECT_EQ(st.info("model.layers.2.mlp.down_proj.weight").dtype, "I8");
    at::Tensor codes = st.tensor("model.layers.2.mlp.down_proj.weight").to(at::kDouble);
    at::Tensor scale = st.tensor("model.layers.2.mlp.down_proj.weight_scale");
    ASSERT_EQ(scale.sizes(), (std::vector<int64_t>{64, 1}));
    EXPECT_LE(codes.abs().max().item<double>(), 128.0);
    EXPECT_GT(std::get<0>(at::_unique(codes[0])).numel(), 16) << "8-bit levels, not fewer";
    json cfg = json::parse(test::read_file(dir / "out-independent/config.json"));
    EXPECT_EQ(cfg["quantization_config"]["format"], "int-quantized");
    EXPECT_EQ(cfg["quantization_config"]["ignore"], json::array({"lm_head"}));
    // recipe.yaml is saved with the defaults filled in.
    const std::string saved = test::read_file(dir / "out-independent/recipe.yaml");
    EXPECT_NE(saved.find("probe_stage:"), std::string::npos) << saved;
    EXPECT_NE(saved.find("scheme: W8A8"), std::string::npos) << saved;
}

// A tensor_group partner set (NVFP4's q/k/v) the host observes as one is stored as an eager
// observe of the three weights' rows concatenated leaves: each its own rows' scales in the
// weights' dtype (bf16 here, not the observer's float32), all one global scale (a real plugin
// through the ABI; the probe compares).
TEST(lifecycle, host_stores_a_tensor_group_partner_set_as_observed_together) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("store");
    auto r = run_probe(dir,
                       "      needs_data: false\n      scheme: NVFP4A16\n"
                       "      targets: [\"re:.*self_attn[.][qkv]_proj$\"]\n",
                       "datafree", false, " --dtype bfloat16");
    ASSERT_EQ(r.cmd.exit_code, 0) << r.cmd.output;
    const json &rep = r.report;
    ASSERT_FALSE(rep.is_discarded());
    EXPECT_EQ(rep["scheme"]["weights"]["strategy"], "tensor_group");
    EXPECT_EQ(rep["store_set"], json::array({"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                             "model.layers.0.self_attn.v_proj"}));
    EXPECT_EQ(rep["store_taken"], true);
    EXPECT_EQ(rep["store_as_eager"], true);
    EXPECT_EQ(rep["store_twice"], "INVALID_ARG");
}

TEST(lifecycle, each_pipeline_sends_its_events) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("pipes");
    auto seq = run_probe(dir, "", "sequential");
    ASSERT_EQ(seq.cmd.exit_code, 0) << seq.cmd.output;
    EXPECT_EQ(seq.trace, expected_trace(5));
    auto basic = run_probe(dir, "", "basic");
    ASSERT_EQ(basic.cmd.exit_code, 0) << basic.cmd.output;
    EXPECT_EQ(basic.trace, expected_trace(1));
    auto datafree = run_probe(dir, "      needs_data: false\n", "datafree", false);
    ASSERT_EQ(datafree.cmd.exit_code, 0) << datafree.cmd.output;
    EXPECT_EQ(datafree.trace, expected_trace(1));
    // In datafree mode no forward pass ran: no hook fired.
    EXPECT_TRUE(datafree.report["pre_calls"].empty());
    // The epoch end of basic and datafree carries every module of the model.
    EXPECT_EQ(basic.report["epochs"][0]["modules"], 72);
}

TEST(lifecycle, independent_runs_each_modifier_alone) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("indep");
    // Two instances in recipe order: both initialize, then each gets its own calibration pass in
    // which only its hooks fire, then both finalize.
    std::string recipe = "a_stage:\n  a_modifiers:\n";
    for (const char *tag : {"A", "B"})
        recipe += std::string("    ServicesProbeModifier:\n      tag: '") + tag + ":'\n      trace_path: " +
                  (dir / "trace") + "\n      report_path: " + (dir / (std::string("report-") + tag)) +
                  "\n      targets: [re:.*layers\\.0\\..*_proj]\n" + (tag[0] == 'A' ? "  b_modifiers:\n" : "");
    test::write_file(dir / "r.yaml", recipe);
    auto r = test::run_command(std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_TEST_PLUGIN_DIR + " --recipe " +
                               (dir / "r.yaml") + " --model " + test::stories_dir() + " --output " + (dir / "out") +
                               " --dataset " + write_dataset(dir) + " --log-level warn");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<std::string> trace;
    std::istringstream t(test::read_file(dir / "trace"));
    for (std::string line; std::getline(t, line);) trace.push_back(line);
    std::vector<std::string> want = {"A:on_initialize", "B:on_initialize"};
    for (const char *tag : {"A:", "B:"}) {
        auto one = expected_trace(5);
        for (size_t i = 1; i + 1 < one.size(); ++i) want.push_back(tag + one[i]);
    }
    want.push_back("A:on_finalize");
    want.push_back("B:on_finalize");
    EXPECT_EQ(trace, want);
    for (const char *tag : {"A", "B"}) {
        json rep = json::parse(test::read_file(dir / (std::string("report-") + tag)));
        ASSERT_EQ(rep["matched"].size(), 7u) << tag;
        for (const auto &m : rep["matched"]) EXPECT_EQ(rep["pre_calls"][m.get<std::string>()], 4) << tag << " " << m;
    }
}

TEST(lifecycle, training_lifecycle_dispatch_with_start) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("train");
    auto r = run_probe(dir, "      start: 0\n", "independent");
    ASSERT_EQ(r.cmd.exit_code, 0) << r.cmd.output;
    EXPECT_EQ(r.trace, expected_trace(5, true));
}

TEST(lifecycle, errors_name_the_modifier_and_leave_no_output) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("err");
    auto r = run_probe(dir, "      fail_in: on_sequential_epoch_end\n", "independent");
    EXPECT_EQ(r.cmd.exit_code, 1);
    EXPECT_NE(r.cmd.output.find("probe_stage.probe_modifiers.ServicesProbeModifier"), std::string::npos) << r.cmd.output;
    EXPECT_NE(r.cmd.output.find("probe fails in on_sequential_epoch_end on purpose"), std::string::npos) << r.cmd.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "out-independent"));
    for (const auto &e : std::filesystem::directory_iterator(dir.path()))
        EXPECT_EQ(e.path().filename().string().find(".out-independent.partial"), std::string::npos) << e.path();
}

TEST(lifecycle, bad_recipes_fail_before_anything_runs) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("bad");
    auto host = [&](const std::string &recipe_text) {
        test::write_file(dir / "r.yaml", recipe_text);
        return test::run_command(std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_TEST_PLUGIN_DIR + " --recipe " +
                                 (dir / "r.yaml") + " --model " + test::stories_dir() + " --output " + (dir / "out"));
    };
    auto unknown = host("s_stage:\n  g_modifiers:\n    GPTQModifier:\n      scheme: W4A16\n");
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_NE(unknown.output.find("unknown modifier 'GPTQModifier' (available: ServicesProbeModifier)"),
              std::string::npos)
        << unknown.output;
    auto field = host("s_stage:\n  g_modifiers:\n    ServicesProbeModifier:\n      sheme: W4A16\n");
    EXPECT_EQ(field.exit_code, 1);
    EXPECT_NE(field.output.find("ServicesProbeModifier: field 'sheme': unknown field"), std::string::npos) << field.output;
    auto type = host("s_stage:\n  g_modifiers:\n    ServicesProbeModifier:\n      quantize: [1]\n");
    EXPECT_EQ(type.exit_code, 1);
    EXPECT_NE(type.output.find("field 'quantize': expected bool"), std::string::npos) << type.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "out"));
}
