// Recipe grammar (llm-compressor's, plus the older forms), YAML scalar typing, and the
// recipe.yaml writer's round trip.
#include "recipe/recipe.h"
#include "recipe/yaml_json.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>

using nlohmann::ordered_json;
using namespace llmc;

namespace {

// The three recipes of reference section 2.3, as YAML.
const char *w4a16_gptq = R"(default_stage:
  default_modifiers:
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: W4A16
      bypass_divisibility_checks: false
      block_size: 128
      dampening_frac: 0.01
      actorder: static
      offload_hessians: false
)";

const char *smoothquant_gptq_w8a8 = R"(quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
      mappings: [[['re:.*q_proj','re:.*k_proj','re:.*v_proj'], 're:.*input_layernorm'], [['re:.*gate_proj','re:.*up_proj'], 're:.*post_attention_layernorm']]
    GPTQModifier:
      targets: ["Linear"]
      ignore: [lm_head]
      scheme: W8A8
)";

const char *fp8_kv_cache = R"(
quant_stage:
    quant_modifiers:
        QuantizationModifier:
            ignore: ["lm_head"]
            config_groups:
                group_0:
                    weights:
                        num_bits: 8
                        type: float
                        strategy: tensor
                        dynamic: false
                        symmetric: true
                    input_activations:
                        num_bits: 8
                        type: float
                        strategy: tensor
                        dynamic: false
                        symmetric: true
                    targets: ["Linear"]
            kv_cache_scheme:
                num_bits: 8
                type: float
                strategy: tensor
                dynamic: false
                symmetric: true
)";

const char *multi_stage = R"(args:
  sparsity: 0.5
sparsity_stage:
  run_type: oneshot
  sparsity_modifiers:
    SparseGPTModifier:
      sparsity: 0.5
      mask_structure: "2:4"
      targets: ['re:model.layers.\d+$']
quant_stage:
  run_type: oneshot
  smooth_modifiers:
    SmoothQuantModifier: {smoothing_strength: 0.5}
  quant_modifiers:
    GPTQModifier:
      ignore: [lm_head, 're:.*mlp.gate$']
      scheme: {W4A16: [Linear]}
    QuantizationModifier:
      targets: Linear
      scheme: FP8_DYNAMIC
finetuning_stage:
  finetuning_modifiers:
    ConstantPruningModifier:
      targets: ['re:.*self_attn.q_proj', 're:.*mlp.down_proj']
      start: 0
)";

std::string what_of(const std::function<void()> &f) {
    try {
        f();
    } catch (const llmc::error &e) {
        return e.what();
    }
    return "<no llmc::error thrown>";
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// Parsing `text` fails with a message containing every one of `parts`.
void expect_error(const std::string &text, std::initializer_list<const char *> parts) {
    std::string msg = what_of([&] { recipe_parse(text, "r.yaml"); });
    for (const char *p : parts)
        EXPECT_HAS(msg, p);
}

void expect_same_modifiers(const recipe &a, const recipe &b) {
    ASSERT_EQ(a.modifiers.size(), b.modifiers.size());
    for (size_t i = 0; i < a.modifiers.size(); ++i) {
        SCOPED_TRACE(a.modifiers[i].where);
        EXPECT_EQ(a.modifiers[i].stage, b.modifiers[i].stage);
        EXPECT_EQ(a.modifiers[i].group, b.modifiers[i].group);
        EXPECT_EQ(a.modifiers[i].class_name, b.modifiers[i].class_name);
        EXPECT_EQ(a.modifiers[i].args, b.modifiers[i].args); // ordered: key order must match too
        EXPECT_EQ(a.modifiers[i].args.dump(), b.modifiers[i].args.dump()); // and number types
    }
}

// Saved and loaded again, a recipe has exactly the same modifiers and args.
recipe round_trip(const recipe &r) {
    std::string yaml = recipe_to_yaml(r);
    recipe back = recipe_parse(yaml, "saved.yaml");
    expect_same_modifiers(r, back);
    EXPECT_EQ(r.args, back.args);
    EXPECT_EQ(recipe_to_yaml(back), yaml); // and writing is stable
    return back;
}

std::filesystem::path temp_file(const std::string &name, const std::string &text) {
    auto dir = std::filesystem::temp_directory_path() / "llmc-test-recipe";
    std::filesystem::create_directories(dir);
    auto path = dir / name;
    std::ofstream(path) << text;
    return path;
}

} // namespace

TEST(recipe, w4a16_gptq) {
    recipe r = recipe_parse(w4a16_gptq);
    ASSERT_EQ(r.modifiers.size(), 1u);
    const auto &m = r.modifiers[0];
    EXPECT_EQ(m.stage, "default");
    EXPECT_EQ(m.group, "default");
    EXPECT_EQ(m.class_name, "GPTQModifier");
    EXPECT_EQ(m.where, "<string>:3:5: default_stage.default_modifiers.GPTQModifier");
    EXPECT_EQ(m.line, 3);
    EXPECT_EQ(m.column, 5);
    EXPECT_EQ(r.source, "<string>");
    EXPECT_TRUE(r.args.is_null());
    EXPECT_EQ(m.args, ordered_json::parse(R"({"targets": ["Linear"], "ignore": ["lm_head"], "scheme": "W4A16",
        "bypass_divisibility_checks": false, "block_size": 128, "dampening_frac": 0.01, "actorder": "static",
        "offload_hessians": false})"));
    EXPECT_TRUE(m.args["block_size"].is_number_integer());
    EXPECT_TRUE(m.args["dampening_frac"].is_number_float());
    EXPECT_TRUE(m.args["offload_hessians"].is_boolean());
    // Already in the saved layout, so it is written back byte for byte.
    EXPECT_EQ(recipe_to_yaml(r), w4a16_gptq);
    round_trip(r);
}

TEST(recipe, smoothquant_gptq_w8a8) {
    recipe r = recipe_parse(smoothquant_gptq_w8a8, "smoothquant_gptq_w8a8.yaml");
    ASSERT_EQ(r.modifiers.size(), 2u);
    EXPECT_EQ(r.modifiers[0].class_name, "SmoothQuantModifier");
    EXPECT_EQ(r.modifiers[0].stage, "quant");
    EXPECT_EQ(r.modifiers[0].group, "quant");
    EXPECT_EQ(r.modifiers[0].where, "smoothquant_gptq_w8a8.yaml:3:5: quant_stage.quant_modifiers.SmoothQuantModifier");
    EXPECT_EQ(r.modifiers[0].args, ordered_json::parse(R"({"smoothing_strength": 0.8, "mappings": [
        [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"],
        [["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"]]})"));
    EXPECT_EQ(r.modifiers[1].class_name, "GPTQModifier");
    EXPECT_EQ(r.modifiers[1].args,
              ordered_json::parse(R"({"targets": ["Linear"], "ignore": ["lm_head"], "scheme": "W8A8"})"));
    EXPECT_EQ(recipe_to_yaml(r), R"(quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
      mappings:
      - - ['re:.*q_proj', 're:.*k_proj', 're:.*v_proj']
        - re:.*input_layernorm
      - - ['re:.*gate_proj', 're:.*up_proj']
        - re:.*post_attention_layernorm
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: W8A8
)");
    round_trip(r);
}

TEST(recipe, fp8_kv_cache_config_groups) {
    recipe r = recipe_parse(fp8_kv_cache);
    ASSERT_EQ(r.modifiers.size(), 1u);
    const auto &m = r.modifiers[0];
    EXPECT_EQ(m.class_name, "QuantizationModifier");
    ordered_json fp8 = ordered_json::parse(
        R"({"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": false, "symmetric": true})");
    ordered_json expected = ordered_json::object();
    expected["ignore"] = {"lm_head"};
    expected["config_groups"]["group_0"]["weights"] = fp8;
    expected["config_groups"]["group_0"]["input_activations"] = fp8;
    expected["config_groups"]["group_0"]["targets"] = {"Linear"};
    expected["kv_cache_scheme"] = fp8;
    EXPECT_EQ(m.args, expected);
    EXPECT_EQ(m.args["kv_cache_scheme"]["type"], "float"); // a string, not a YAML type name
    round_trip(r);
}

TEST(recipe, multi_stage_flattened_in_order) {
    recipe r = recipe_parse(multi_stage);
    ASSERT_EQ(r.modifiers.size(), 5u);
    std::vector<std::string> got;
    for (const auto &m : r.modifiers)
        got.push_back(m.stage + "/" + m.group + "/" + m.class_name);
    EXPECT_EQ(got, (std::vector<std::string>{"sparsity/sparsity/SparseGPTModifier", "quant/smooth/SmoothQuantModifier",
                                             "quant/quant/GPTQModifier", "quant/quant/QuantizationModifier",
                                             "finetuning/finetuning/ConstantPruningModifier"}));
    EXPECT_EQ(r.args, ordered_json::parse(R"({"sparsity": 0.5})"));
    EXPECT_EQ(r.modifiers[0].args["mask_structure"], "2:4");
    EXPECT_EQ(r.modifiers[0].args["targets"][0], "re:model.layers.\\d+$");
    EXPECT_EQ(r.modifiers[2].args["scheme"], ordered_json::parse(R"({"W4A16": ["Linear"]})"));
    EXPECT_EQ(r.modifiers[2].where, "<string>:15:5: quant_stage.quant_modifiers.GPTQModifier");
    recipe back = round_trip(r);
    // run_type is a legacy marker and is not written back.
    EXPECT_EQ(recipe_to_yaml(back).find("run_type"), std::string::npos);
    EXPECT_EQ(recipe_to_yaml(r).rfind("args:\n  sparsity: 0.5\n", 0), 0u);
}

TEST(recipe, top_level_modifiers_list) {
    recipe r = recipe_parse(R"(modifiers:
  - SmoothQuantModifier:
      smoothing_strength: 0.8
  - GPTQModifier:
      targets: Linear
      scheme: W8A8
      ignore: [lm_head]
  - QuantizationModifier:
)",
                            "seed.yaml");
    ASSERT_EQ(r.modifiers.size(), 3u);
    for (const auto &m : r.modifiers) {
        EXPECT_EQ(m.stage, "default");
        EXPECT_EQ(m.group, "default");
    }
    EXPECT_EQ(r.modifiers[1].class_name, "GPTQModifier");
    EXPECT_EQ(r.modifiers[1].where, "seed.yaml:4:5: modifiers[1].GPTQModifier");
    EXPECT_EQ(r.modifiers[1].args["targets"], "Linear");
    EXPECT_EQ(r.modifiers[2].args, ordered_json::object());
    round_trip(r);
}

TEST(recipe, top_level_modifiers_mapping_and_groups) {
    recipe r = recipe_parse(R"(modifiers:
  GPTQModifier: {targets: Linear, scheme: W4A16}
quant_modifiers:
  QuantizationModifier:
    scheme: FP8
)");
    ASSERT_EQ(r.modifiers.size(), 2u);
    EXPECT_EQ(r.modifiers[0].stage, "default");
    EXPECT_EQ(r.modifiers[0].group, "default");
    EXPECT_EQ(r.modifiers[0].where, "<string>:2:3: modifiers.GPTQModifier");
    EXPECT_EQ(r.modifiers[1].stage, "default"); // older llm-compressor: a bare group is stage "default"
    EXPECT_EQ(r.modifiers[1].group, "quant");
    EXPECT_EQ(r.modifiers[1].where, "<string>:4:3: quant_modifiers.QuantizationModifier");
    round_trip(r);
}

TEST(recipe, group_field_overrides_inferred_group) {
    recipe r = recipe_parse(R"(quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      group: smooth
      smoothing_strength: 0.5
    GPTQModifier:
      scheme: W4A16
      group: ~
)");
    ASSERT_EQ(r.modifiers.size(), 2u);
    EXPECT_EQ(r.modifiers[0].group, "smooth");
    EXPECT_FALSE(r.modifiers[0].args.contains("group"));
    EXPECT_EQ(r.modifiers[1].group, "quant"); // null group: the inferred one
    EXPECT_FALSE(r.modifiers[1].args.contains("group"));
    std::string yaml = recipe_to_yaml(r);
    EXPECT_HAS(yaml, "  smooth_modifiers:\n    SmoothQuantModifier:\n      smoothing_strength: 0.5\n");
    round_trip(r);
}

TEST(recipe, empty_modifier_fields_mean_none) {
    recipe r = recipe_parse("s_stage:\n  g_modifiers:\n    A:\n    B: {}\n    C: ~\n");
    ASSERT_EQ(r.modifiers.size(), 3u);
    for (const auto &m : r.modifiers)
        EXPECT_EQ(m.args, ordered_json::object());
    EXPECT_EQ(recipe_to_yaml(r), "s_stage:\n  g_modifiers:\n    A: {}\n    B: {}\n    C: {}\n");
    round_trip(r);
}

TEST(recipe, json_text_and_files) {
    std::string json = R"({
	"quant_stage": {
		"quant_modifiers": {
			"GPTQModifier": {"targets": ["Linear"], "scheme": "W4A16", "dampening_frac": 1e-2, "actorder": null}
		}
	}
})";
    recipe r = recipe_parse(json);
    ASSERT_EQ(r.modifiers.size(), 1u);
    EXPECT_EQ(r.modifiers[0].args["dampening_frac"], 0.01);
    EXPECT_TRUE(r.modifiers[0].args["actorder"].is_null());
    EXPECT_HAS(recipe_to_yaml(r), "      dampening_frac: 0.01\n"); // null actorder dropped
    EXPECT_EQ(recipe_to_yaml(r).find("actorder"), std::string::npos);

    auto path = temp_file("recipe.json", json);
    recipe f = recipe_load_file(path.string());
    EXPECT_EQ(f.source, path.string());
    EXPECT_EQ(f.modifiers[0].where, path.string() + ":4:4: quant_stage.quant_modifiers.GPTQModifier");
    expect_same_modifiers(r, f);

    auto yaml_path = temp_file("recipe.yaml", smoothquant_gptq_w8a8);
    expect_same_modifiers(recipe_load_file(yaml_path.string()), recipe_parse(smoothquant_gptq_w8a8));
}

TEST(recipe, markdown_front_matter) {
    std::string md = std::string("# W8A8 recipe card\n\nSome prose.\n\n---\n") + smoothquant_gptq_w8a8 +
                     "---\n\n## Usage\n\nRun it: `a: b`\n";
    auto path = temp_file("card.md", md);
    recipe r = recipe_load_file(path.string());
    expect_same_modifiers(r, recipe_parse(smoothquant_gptq_w8a8));
    EXPECT_EQ(r.modifiers[0].line, 8); // lines still count from the top of the file

    // Front matter at the top of a plain text is unwrapped too.
    recipe s = recipe_parse(std::string("---\n") + w4a16_gptq + "---\n# prose: not: yaml: [\n");
    expect_same_modifiers(s, recipe_parse(w4a16_gptq));

    std::string err = what_of([&] { recipe_parse("---\nquant_stage: [x]\n---\ntext\n", "card.md"); });
    EXPECT_HAS(err, "card.md:2:");
    EXPECT_HAS(err, "quant_stage");
    err = what_of([&] { recipe_load_file(temp_file("bare.md", "# no front matter\n").string()); });
    EXPECT_HAS(err, "bare.md");
    EXPECT_HAS(err, "front matter");
}

TEST(recipe, merge_keys_and_anchors) {
    recipe r = recipe_parse(R"(quant_stage:
  quant_modifiers:
    QuantizationModifier:
      config_groups:
        group_0:
          weights: &w {num_bits: 8, type: int, symmetric: true}
          targets: [Linear]
        group_1:
          weights:
            <<: *w
            num_bits: 4
            group_size: 128
          targets: ['re:.*down_proj']
)");
    const auto &g = r.modifiers[0].args["config_groups"];
    EXPECT_EQ(g["group_0"]["weights"], ordered_json::parse(R"({"num_bits": 8, "type": "int", "symmetric": true})"));
    EXPECT_EQ(g["group_1"]["weights"],
              ordered_json::parse(R"({"num_bits": 4, "type": "int", "symmetric": true, "group_size": 128})"));
    round_trip(r);
}

TEST(recipe, to_yaml_drops_null_private_and_group_fields) {
    recipe r;
    recipe_modifier m;
    m.stage = "quant";
    m.group = "quant";
    m.class_name = "GPTQModifier";
    m.args = ordered_json::parse(
        R"({"targets": ["Linear"], "index": null, "group": "quant", "hooks_": [],
            "config_groups": {"g": {"x": null}}})");
    r.modifiers.push_back(m);
    EXPECT_EQ(recipe_to_yaml(r), "quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      targets: [Linear]\n"
                                 "      config_groups:\n        g:\n          x: null\n");
    // Same stage and group share one mapping; a class twice there cannot be written.
    m.class_name = "QuantizationModifier";
    m.args = ordered_json::object();
    r.modifiers.push_back(m);
    EXPECT_HAS(recipe_to_yaml(r), "    GPTQModifier:\n      targets: [Linear]\n      config_groups:\n"
                                  "        g:\n          x: null\n    QuantizationModifier: {}\n");
    m.where = "r.yaml: quant_stage.quant_modifiers.GPTQModifier";
    m.class_name = "GPTQModifier";
    r.modifiers.push_back(m);
    std::string err = what_of([&] { recipe_to_yaml(r); });
    EXPECT_HAS(err, "r.yaml: quant_stage.quant_modifiers.GPTQModifier");
    EXPECT_HAS(err, "already holds a GPTQModifier");
}

TEST(recipe, to_yaml_quotes_strings_that_would_be_misread) {
    const std::vector<std::string> tricky = {
        "true", "False", "yes", "off", "null", "~", "", "123", "-7", "0x1F", "1e-2", ".5", "1.0", ".inf", "2:4",
        "re:.*q_proj", "a: b", "key:", "#x", "x #y", " lead", "trail ", "multi\nline", "it's", "-", "- x", "[a]",
        "{a}", "a,b", "<<", "@x", "%x", "`x", "!x", "&x", "*x", "|", ">", "?", ":", "=", "...", "---", "a\"b",
        "back\\slash", "tab\there", "\x01", "caf\xc3\xa9", "Linear", "re:model.layers.\\d+$"};
    ordered_json args = ordered_json::object();
    args["scalars"] = ordered_json::array();
    args["nested"] = ordered_json::array();
    for (size_t i = 0; i < tricky.size(); ++i) {
        args["v" + std::to_string(i)] = tricky[i];
        args["scalars"].push_back(tricky[i]);                       // flow list
        args["nested"].push_back(ordered_json::array({tricky[i]})); // block list of flow lists
        args["keys"][tricky[i]] = i;                                // as keys
    }
    args[tricky[0]] = "key true";
    args["mixed"] = ordered_json::parse(R"([1, 1.0, 0.01, 1e-5, 1e20, -0.0, true, null, {"a": [[]]}, {}])");
    recipe r;
    r.modifiers.push_back({"s", "g", "M", args, "x"});
    recipe back = round_trip(r);
    const auto &mixed = back.modifiers[0].args["mixed"];
    EXPECT_TRUE(mixed[1].is_number_float());
    EXPECT_TRUE(mixed[3].is_number_float());
    EXPECT_EQ(mixed[3].get<double>(), 1e-5);
}

TEST(yaml_json, scalar_types) {
    ordered_json j = yaml_to_json(YAML::Load(R"(
t1: true
t2: True
f1: false
f2: FALSE
y: yes
n0: ~
n1: null
n2:
i: 42
neg: -7
hex: 0x1F
octal: 0o17
under: 1_000
big: 18446744073709551615
f: 0.01
e: 1e-2
e2: 1.0e-5
half: .5
minf: -.inf
s: hello
q1: "true"
q2: '123'
q3: "null"
q4: ""
t: !!str 5
ti: !!int "5"
tf: !!float 1
blk: |
  a
ver: 1.2.3
)"));
    EXPECT_EQ(j["t1"], true);
    EXPECT_EQ(j["t2"], true);
    EXPECT_EQ(j["f1"], false);
    EXPECT_EQ(j["f2"], false);
    EXPECT_EQ(j["y"], true);
    EXPECT_TRUE(j["n0"].is_null());
    EXPECT_TRUE(j["n1"].is_null());
    EXPECT_TRUE(j["n2"].is_null());
    EXPECT_TRUE(j["i"].is_number_integer());
    EXPECT_EQ(j["i"], 42);
    EXPECT_EQ(j["neg"], -7);
    EXPECT_EQ(j["hex"], 31);
    EXPECT_EQ(j["octal"], 15);
    EXPECT_EQ(j["under"], 1000);
    EXPECT_EQ(j["big"].get<uint64_t>(), 18446744073709551615ull);
    EXPECT_TRUE(j["f"].is_number_float());
    EXPECT_EQ(j["f"], 0.01);
    EXPECT_EQ(j["e"], 0.01);
    EXPECT_EQ(j["e2"], 1e-5);
    EXPECT_EQ(j["half"], 0.5);
    EXPECT_TRUE(std::isinf(j["minf"].get<double>()));
    EXPECT_EQ(j["s"], "hello");
    EXPECT_EQ(j["q1"], "true");
    EXPECT_EQ(j["q2"], "123");
    EXPECT_EQ(j["q3"], "null");
    EXPECT_EQ(j["q4"], "");
    EXPECT_EQ(j["t"], "5");
    EXPECT_EQ(j["ti"], 5);
    EXPECT_TRUE(j["tf"].is_number_float());
    EXPECT_EQ(j["blk"], "a\n");
    EXPECT_EQ(j["ver"], "1.2.3");
    std::vector<std::string> keys;
    for (auto &item : j.items())
        keys.push_back(item.key());
    EXPECT_EQ(keys.front(), "t1"); // key order kept
    EXPECT_EQ(keys.back(), "ver");
}

TEST(yaml_json, json_to_yaml_round_trip) {
    ordered_json j = ordered_json::parse(R"({"z": 1, "a": [1, 2.0, "3", "true", "", null, [["x"]]],
        "<<": {"nested": {"deep": -1.5e-7}}, "t": false, "u": 18446744073709551615})");
    EXPECT_EQ(yaml_to_json(json_to_yaml(j)).dump(), j.dump());
    // The text form too.
    EXPECT_EQ(yaml_to_json(YAML::Load(yaml_dump(j))).dump(), j.dump());
}

TEST(yaml_json, errors_name_line_and_column) {
    std::string err = what_of([] { yaml_to_json(YAML::Load("a: 1\nb: 2\na: 3\n"), "x.yaml"); });
    EXPECT_HAS(err, "x.yaml:3:1");
    EXPECT_HAS(err, "duplicate key 'a'");
    err = what_of([] { yaml_to_json(YAML::Load("a: !custom 1\n")); });
    EXPECT_HAS(err, "line 1, column 4");
    EXPECT_HAS(err, "!custom");
    err = what_of([] { yaml_to_json(YAML::Load("a: !!int x\n")); });
    EXPECT_HAS(err, "!!int");
}

TEST(recipe_errors, unparseable_yaml) {
    expect_error("quant_stage:\n  quant_modifiers: [1, 2\n  x: 1\n", {"r.yaml:", "invalid YAML"});
    expect_error("quant_stage:\n  quant_modifiers:\n    GPTQModifier: scheme: W4A16\n", {"r.yaml:3:", "invalid YAML"});
}

TEST(recipe_errors, top_level_not_a_mapping) {
    expect_error("- GPTQModifier\n- QuantizationModifier\n", {"r.yaml:1:1", "must be a mapping", "a list"});
    expect_error("GPTQModifier\n", {"r.yaml:1:1", "must be a mapping", "a scalar"});
}

TEST(recipe_errors, stage_not_a_mapping) {
    expect_error("quant_stage: [GPTQModifier]\n", {"r.yaml:1:14", "stage 'quant_stage'", "a list"});
    expect_error("x: 1\n", {"r.yaml:1:1", "'x'"});
    expect_error("a_modifiers: {A: {}}\nquant_stage:\n", {"r.yaml:2:1", "stage 'quant_stage'", "empty"});
}

TEST(recipe_errors, group_not_a_mapping) {
    expect_error("quant_stage:\n  quant_modifiers: GPTQModifier\n",
                 {"r.yaml:2:20", "quant_stage.quant_modifiers", "mapping"});
    expect_error("quant_stage:\n  quant_modifiers:\n    - GPTQModifier: {}\n",
                 {"r.yaml:3:5", "quant_stage.quant_modifiers", "a list"});
    expect_error("quant_modifiers: 3\n", {"r.yaml:1:18", "'quant_modifiers'"});
    expect_error("modifiers: 3\n", {"r.yaml:1:12", "'modifiers'"});
}

TEST(recipe_errors, modifier_fields_not_a_mapping) {
    expect_error("quant_stage:\n  quant_modifiers:\n    GPTQModifier: [Linear]\n",
                 {"r.yaml:3:19", "GPTQModifier", "quant_stage.quant_modifiers", "a list"});
    expect_error("modifiers:\n  - GPTQModifier: W4A16\n", {"r.yaml:2:19", "GPTQModifier", "a scalar"});
}

TEST(recipe_errors, unknown_top_level_key) {
    std::string text = std::string(w4a16_gptq) + "version: 1.1\n";
    expect_error(text, {"r.yaml:12:1", "'version'", "'<name>_stage'", "'<group>_modifiers'", "'modifiers'", "'args'"});
    expect_error("stages:\n  - x\n", {"r.yaml:1:1", "unknown top-level key 'stages'"});
    expect_error("_stage:\n  a_modifiers: {A: {}}\n", {"r.yaml:1:1", "'_stage'"});
}

TEST(recipe_errors, unknown_key_in_stage) {
    expect_error("quant_stage:\n  quant_modifiers: {A: {}}\n  GPTQModifier: {}\n",
                 {"r.yaml:3:3", "'GPTQModifier'", "stage 'quant_stage'", "'<group>_modifiers'"});
}

TEST(recipe_errors, empty_recipe) {
    expect_error("", {"r.yaml", "empty recipe"});
    expect_error("# only a comment\n", {"r.yaml", "empty recipe"});
    expect_error("args: {a: 1}\n", {"r.yaml", "empty recipe"});
    expect_error("quant_stage:\n  quant_modifiers: {}\n", {"r.yaml", "empty recipe"});
    expect_error("modifiers: []\n", {"r.yaml", "empty recipe"});
}

TEST(recipe_errors, duplicates_and_bad_entries) {
    // PyYAML would silently keep only the second GPTQModifier.
    expect_error("quant_stage:\n  quant_modifiers:\n    GPTQModifier: {}\n    GPTQModifier: {scheme: W8A8}\n",
                 {"r.yaml:4:5", "duplicate", "GPTQModifier"});
    expect_error("quant_stage:\n  a_modifiers: {A: {}}\nquant_stage:\n  b_modifiers: {B: {}}\n",
                 {"r.yaml:3:1", "duplicate", "quant_stage"});
    expect_error("modifiers:\n  - GPTQModifier:\n    scheme: W4A16\n",
                 {"r.yaml:2:5", "entry 0 of 'modifiers'", "'GPTQModifier', 'scheme'"});
    expect_error("modifiers:\n  - GPTQModifier\n", {"r.yaml:2:5", "entry 0 of 'modifiers'", "a scalar"});
    expect_error("s_stage:\n  g_modifiers:\n    A: {group: [x]}\n", {"r.yaml:3:", "'group'", "'A'"});
    expect_error("s_stage:\n  g_modifiers:\n    A: {x: 1, x: 2}\n", {"r.yaml:3:15", "duplicate key 'x'"});
    expect_error("args: [1]\ns_stage: {g_modifiers: {A: {}}}\n", {"r.yaml:1:7", "'args'"});
    expect_error("s_stage:\n  g_modifiers:\n    A: {targets: !python/name:foo ''}\n",
                 {"r.yaml:3:", "unsupported YAML tag"});
}

TEST(recipe_errors, missing_file) {
    std::string err = what_of([] { recipe_load_file("/nonexistent/recipe.yaml"); });
    EXPECT_HAS(err, "/nonexistent/recipe.yaml");
    err = what_of([] { recipe_load_file(std::filesystem::temp_directory_path().string()); });
    EXPECT_HAS(err, "not a regular file");
}
