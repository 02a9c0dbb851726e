// compressed-tensors export (host/src/export): format selection, each format's tensors against
// hand-computed golden values (reference section 6.2), quantization_config against the
// reference's 6.3 dicts, and full round trips random model -> export -> load -> dense weights.
#include "export/compressed_tensors.h"
#include "export/formats.h"
#include "export/module_compress.h"
#include "export/quant_config.h"
#include "io/safetensors.h"
#include "model/causal_lm.h"
#include "quant/args.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "util/error.h"

#include "test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

using namespace llmc;
using namespace llmc::exporter;
using json = nlohmann::json;
using quant::quant_scheme;

namespace {

quant_scheme preset(const std::string &name) { return quant::preset_scheme(name, {"Linear"}); }

quant_scheme weights_only(const json &weights) {
    return quant::scheme_from_json(json{{"targets", {"Linear"}}, {"weights", weights}}, "test");
}

std::map<std::string, saved_tensor> by_name(const std::vector<saved_tensor> &v) {
    std::map<std::string, saved_tensor> out;
    for (const auto &t : v) out[t.name] = t;
    return out;
}

template <class T> std::vector<T> ints(const at::Tensor &t) {
    auto c = t.to(at::kLong).contiguous().flatten();
    std::vector<T> out;
    for (int64_t i = 0; i < c.numel(); ++i) out.push_back(static_cast<T>(c.data_ptr<int64_t>()[i]));
    return out;
}

std::vector<float> floats(const at::Tensor &t) {
    auto c = t.to(at::kFloat).contiguous().flatten();
    return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

at::Tensor f32(std::vector<float> v, std::vector<int64_t> shape) { return at::tensor(v, at::kFloat).reshape(shape); }

void expect_tensor(const std::map<std::string, saved_tensor> &m, const std::string &name, const std::string &dtype,
                   std::vector<int64_t> shape) {
    auto it = m.find(name);
    ASSERT_NE(it, m.end()) << name << " missing";
    std::string dt = it->second.dtype.empty() ? safetensors_dtype_name(it->second.tensor.scalar_type()) : it->second.dtype;
    EXPECT_EQ(dt, dtype) << name;
    EXPECT_EQ(it->second.tensor.sizes().vec(), shape) << name;
}

template <class F> std::string error_of(F f) {
    try {
        f();
    } catch (const llmc::error &e) {
        return e.what();
    }
    return "";
}

// The E2M1 grid with every code 0..15 except -0: codes 0..7, 9..15, 0.
const std::vector<float> fp4_grid = {0, .5, 1, 1.5, 2, 3, 4, 6, -.5, -1, -1.5, -2, -3, -4, -6, 0};
// Bytes: code(2k) | code(2k+1) << 4.
const std::vector<int> fp4_grid_bytes = {0x10, 0x32, 0x54, 0x76, 0xA9, 0xCB, 0xED, 0x0F};

} // namespace

// ---------------------------------------------------------------- format selection

TEST(export_format, presets_follow_the_018_priority_list) {
    EXPECT_EQ(infer_module_format("Linear", preset("W4A16")), "pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W4A16_ASYM")), "pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W8A16")), "pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W3A16")), "pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W8A8")), "int-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W4A8")), "int-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("W4AFP8")), "int-quantized"); // any input activations
    EXPECT_EQ(infer_module_format("Linear", preset("FP8")), "float-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("FP8_DYNAMIC")), "float-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("FP8_BLOCK")), "float-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("NVFP4A16")), "nvfp4-pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("NVFP4")), "nvfp4-pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("MXFP4A16")), "mxfp4-pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("MXFP4")), "mxfp4-pack-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("MXFP8A16")), "mxfp8-quantized");
    EXPECT_EQ(infer_module_format("Linear", preset("MXFP8")), "mxfp8-quantized");
    // FP8 weight-only: naive (pack is INT only).
    EXPECT_EQ(infer_module_format("Linear", weights_only({{"num_bits", 8}, {"type", "float"}, {"strategy", "channel"}})),
              "naive-quantized");
    // INT above 8 bits cannot be packed.
    EXPECT_EQ(infer_module_format("Linear", weights_only({{"num_bits", 16}, {"strategy", "channel"}})),
              "naive-quantized");
    // Only Linear/Embedding are compressed; no weights => dense.
    EXPECT_EQ(infer_module_format("LlamaMLP", preset("W4A16")), "dense");
    EXPECT_EQ(infer_module_format("Embedding", preset("W8A8")), "int-quantized");
    quant_scheme input_only = preset("FP8");
    input_only.weights.reset();
    EXPECT_EQ(infer_module_format("Linear", input_only), "dense");
    // The scheme's own format wins.
    quant_scheme forced = preset("W8A16");
    forced.format = "naive-quantized";
    EXPECT_EQ(infer_module_format("Linear", forced), "naive-quantized");
}

TEST(export_format, model_format_is_the_single_non_dense_one) {
    EXPECT_EQ(model_format({}), "dense");
    EXPECT_EQ(model_format({"dense"}), "dense");
    EXPECT_EQ(model_format({"dense", "pack-quantized"}), "pack-quantized");
    EXPECT_EQ(model_format({"pack-quantized", "float-quantized"}), "mixed-precision");
    EXPECT_EQ(vllm_module_type("MixtralSparseMoeBlockGate"), "Linear");
    EXPECT_EQ(vllm_module_type("Qwen3MoeRouter"), "Linear");
    EXPECT_TRUE(is_attention_class("LlamaAttention"));
    EXPECT_FALSE(is_attention_class("Linear"));
}

// ---------------------------------------------------------------- per-format tensors

// int4 symmetric, group 8, scale 1: q = w. u = q + 8; element i in bits [4i, 4i+4) of the word.
// Row [0..7] -> u = 8..15 -> 0xFEDCBA98; row [-8..-1] -> u = 0..7 -> 0x76543210.
TEST(export_pack, int4_row_packs_into_little_endian_words) {
    auto scheme = weights_only({{"num_bits", 4}, {"group_size", 8}, {"strategy", "group"}});
    at::Tensor w = f32({0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1}, {2, 8});
    std::vector<saved_tensor> in = {{"weight", w, ""},
                                    {"bias", at::zeros({2}), ""},
                                    {"weight_scale", at::ones({2, 1}), ""},
                                    {"weight_zero_point", at::zeros({2, 1}, at::kChar), ""}};
    auto out = by_name(compress_module("m", scheme, "pack-quantized", in, at::kFloat));
    EXPECT_EQ(out.size(), 4u); // bias, weight_packed, weight_scale, weight_shape; no symmetric zp
    expect_tensor(out, "weight_packed", "I32", {2, 1});
    expect_tensor(out, "weight_scale", "F32", {2, 1});
    expect_tensor(out, "weight_shape", "I64", {2});
    expect_tensor(out, "bias", "F32", {2});
    EXPECT_EQ(out.count("weight"), 0u);
    EXPECT_EQ(out.count("weight_zero_point"), 0u);
    EXPECT_EQ(ints<int64_t>(out["weight_packed"].tensor),
              (std::vector<int64_t>{static_cast<int32_t>(0xFEDCBA98u), 0x76543210}));
    EXPECT_EQ(ints<int64_t>(out["weight_shape"].tensor), (std::vector<int64_t>{2, 8}));
}

// int4 asymmetric group 8 over 8 rows; w = 0, zp_i = i - 8, so q = zp_i and u_i = i: each weight row is
// i * 0x11111111, and the zero points packed along rows (dim 0) give one word 0x76543210.
TEST(export_pack, asymmetric_zero_points_pack_along_rows) {
    auto scheme = weights_only({{"num_bits", 4}, {"group_size", 8}, {"strategy", "group"}, {"symmetric", false}});
    at::Tensor zp = (at::arange(8, at::kLong) - 8).to(at::kChar).reshape({8, 1});
    std::vector<saved_tensor> in = {{"weight", at::zeros({8, 8}, at::kBFloat16), ""},
                                    {"weight_scale", at::ones({8, 1}, at::kBFloat16), ""},
                                    {"weight_zero_point", zp, ""}};
    auto out = by_name(compress_module("m", scheme, "pack-quantized", in, at::kBFloat16));
    expect_tensor(out, "weight_packed", "I32", {8, 1});
    expect_tensor(out, "weight_scale", "BF16", {8, 1});
    expect_tensor(out, "weight_zero_point", "I32", {1, 1});
    EXPECT_EQ(ints<int64_t>(out["weight_zero_point"].tensor), (std::vector<int64_t>{0x76543210}));
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < 8; ++i) rows.push_back(i * 0x11111111);
    EXPECT_EQ(ints<int64_t>(out["weight_packed"].tensor), rows);

    // Channel zero points pack the same way; a tensor's single zero point stays int8 [1].
    auto channel = weights_only({{"num_bits", 4}, {"strategy", "channel"}, {"symmetric", false}});
    out = by_name(compress_module("m", channel, "pack-quantized", in, at::kBFloat16));
    expect_tensor(out, "weight_zero_point", "I32", {1, 1});
    auto tensor = weights_only({{"num_bits", 4}, {"strategy", "tensor"}, {"symmetric", false}});
    in[1].tensor = at::ones({1}, at::kBFloat16);
    in[2].tensor = at::full({1}, -3, at::kChar);
    out = by_name(compress_module("m", tensor, "pack-quantized", in, at::kBFloat16));
    expect_tensor(out, "weight_zero_point", "I8", {1});
    EXPECT_EQ(ints<int64_t>(out["weight_zero_point"].tensor), (std::vector<int64_t>{-3}));
    expect_tensor(out, "weight_scale", "BF16", {1});
}

// Actorder group: g_idx written as int32 [in]; missing one means in-order groups.
TEST(export_pack, actorder_group_writes_g_idx) {
    auto scheme = weights_only({{"num_bits", 4}, {"group_size", 4}, {"strategy", "group"}, {"actorder", "group"}});
    at::Tensor w = at::randn({2, 8});
    auto out = by_name(compress_module("m", scheme, "pack-quantized", {{"weight", w, ""}}, at::kFloat));
    expect_tensor(out, "weight_g_idx", "I32", {8});
    EXPECT_EQ(ints<int64_t>(out["weight_g_idx"].tensor), (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1}));
    at::Tensor g = at::tensor(std::vector<int64_t>{1, 0, 1, 0, 0, 1, 1, 0}, at::kLong);
    out = by_name(compress_module("m", scheme, "pack-quantized", {{"weight", w, ""}, {"weight_g_idx", g, ""}},
                                  at::kFloat));
    EXPECT_EQ(ints<int64_t>(out["weight_g_idx"].tensor), ints<int64_t>(g));
    EXPECT_EQ(out["weight_g_idx"].tensor.scalar_type(), at::kInt);
}

// FP8 E4M3 codes: 1 = 0x38, -2 = 0xC0, 448 = 0x7E, 0.5 = 0x30, -1 = 0xB8, 2 = 0x40.
TEST(export_float, fp8_weight_codes_and_channel_scales) {
    at::Tensor w = f32({1, -2, 448, 0, 0.5, 0.25, -0.5, 1}, {2, 4}).to(at::kBFloat16);
    at::Tensor scale = f32({1, 0.5}, {2, 1}).to(at::kBFloat16);
    std::vector<saved_tensor> in = {{"weight", w, ""}, {"weight_scale", scale, ""}};
    auto out = by_name(compress_module("m", preset("FP8_DYNAMIC"), "float-quantized", in, at::kBFloat16));
    EXPECT_EQ(out.size(), 2u); // dynamic input activations leave nothing
    expect_tensor(out, "weight", "F8_E4M3", {2, 4});
    expect_tensor(out, "weight_scale", "BF16", {2, 1});
    EXPECT_EQ(out["weight"].tensor.scalar_type(), at::kByte);
    EXPECT_EQ(ints<int>(out["weight"].tensor), (std::vector<int>{0x38, 0xC0, 0x7E, 0x00, 0x38, 0x30, 0xB8, 0x40}));
    EXPECT_EQ(floats(out["weight_scale"].tensor), (std::vector<float>{1, 0.5}));
}

TEST(export_float, int8_weights_and_static_activation_scales) {
    // W8A8: int8 channel weights, dynamic token inputs (nothing saved for them).
    at::Tensor w = f32({127, -127, 64, 0}, {2, 2});
    std::vector<saved_tensor> in = {{"weight", w, ""}, {"weight_scale", f32({1, 2}, {2, 1}), ""}};
    auto out = by_name(compress_module("m", preset("W8A8"), "int-quantized", in, at::kBFloat16));
    expect_tensor(out, "weight", "I8", {2, 2});
    expect_tensor(out, "weight_scale", "BF16", {2, 1});
    EXPECT_EQ(ints<int>(out["weight"].tensor), (std::vector<int>{127, -127, 32, 0}));
    EXPECT_EQ(out.size(), 2u);

    // FP8 (static tensor input): input_scale [1] in the model dtype; its symmetric zp dropped.
    in = {{"weight", w, ""}, {"weight_scale", f32({1}, {1}), ""}, {"input_scale", f32({0.25}, {1}), ""},
          {"input_zero_point", at::zeros({1}), ""}};
    out = by_name(compress_module("m", preset("FP8"), "float-quantized", in, at::kBFloat16));
    expect_tensor(out, "input_scale", "BF16", {1});
    EXPECT_EQ(out.count("input_zero_point"), 0u);
    EXPECT_EQ(out.size(), 3u);
    // Without a calibrated input_scale the save says what is missing.
    in.pop_back();
    in.pop_back();
    EXPECT_NE(error_of([&] { compress_module("layer.q", preset("FP8"), "float-quantized", in, at::kBFloat16); })
                  .find("'input_scale' is missing"),
              std::string::npos);
}

// NVFP4: nibbles of the E2M1 codes, F8 local scales, float32 global scale.
TEST(export_fp4, nvfp4_nibbles_f8_scales_global_scale) {
    // Stored qparams: scale 2 (0x40), global 1 => q = w / 2.
    std::vector<float> doubled;
    for (float v : fp4_grid) doubled.push_back(2 * v);
    std::vector<saved_tensor> in = {{"weight", f32(doubled, {1, 16}), ""},
                                    {"weight_scale", f32({2}, {1, 1}), ""},
                                    {"weight_global_scale", f32({1}, {1}), ""}};
    auto out = by_name(compress_module("m", preset("NVFP4A16"), "nvfp4-pack-quantized", in, at::kBFloat16));
    EXPECT_EQ(out.size(), 3u);
    expect_tensor(out, "weight_packed", "U8", {1, 8});
    expect_tensor(out, "weight_scale", "F8_E4M3", {1, 1});
    expect_tensor(out, "weight_global_scale", "F32", {1});
    EXPECT_EQ(ints<int>(out["weight_packed"].tensor), fp4_grid_bytes);
    EXPECT_EQ(ints<int>(out["weight_scale"].tensor), (std::vector<int>{0x40}));
    EXPECT_EQ(floats(out["weight_global_scale"].tensor), (std::vector<float>{1}));

    // Computed: absmax 6 => global 448*6/6 = 448, local fp8(448 * 6/6) = 448 (0x7E), q = w.
    out = by_name(compress_module("m", preset("NVFP4A16"), "nvfp4-pack-quantized",
                                  {{"weight", f32(fp4_grid, {1, 16}), ""}}, at::kFloat));
    EXPECT_EQ(ints<int>(out["weight_packed"].tensor), fp4_grid_bytes);
    EXPECT_EQ(ints<int>(out["weight_scale"].tensor), (std::vector<int>{0x7E}));
    EXPECT_EQ(floats(out["weight_global_scale"].tensor), (std::vector<float>{448}));
}

// NVFP4 (W4A4): the calibrated input global scale is the only activation tensor ("local" dynamic).
TEST(export_fp4, nvfp4_input_global_scale) {
    std::vector<saved_tensor> in = {{"weight", f32(fp4_grid, {1, 16}), ""},
                                    {"input_global_scale", f32({1234}, {1}), ""},
                                    {"input_scale", f32({1}, {1}), ""}}; // stale: dropped
    auto out = by_name(compress_module("m", preset("NVFP4"), "nvfp4-pack-quantized", in, at::kBFloat16));
    EXPECT_EQ(out.size(), 4u);
    expect_tensor(out, "input_global_scale", "F32", {1});
    EXPECT_EQ(floats(out["input_global_scale"].tensor), (std::vector<float>{1234}));
    EXPECT_EQ(out.count("input_scale"), 0u);
    EXPECT_NE(error_of([&] {
                  compress_module("m", preset("NVFP4"), "nvfp4-pack-quantized", {in[0]}, at::kBFloat16);
              }).find("input_global_scale"),
              std::string::npos);
}

// FP8_BLOCK: a scale per 128x128 block of the zero-padded weight, codes cropped back.
TEST(export_float, fp8_block_scales) {
    auto out = by_name(compress_module("m", preset("FP8_BLOCK"), "float-quantized",
                                       {{"weight", at::randn({200, 300}).to(at::kBFloat16), ""}}, at::kBFloat16));
    expect_tensor(out, "weight", "F8_E4M3", {200, 300});
    expect_tensor(out, "weight_scale", "BF16", {2, 3});
    EXPECT_EQ(out.size(), 2u);
}

// MX: E8M0 scale bytes 127 + floor(log2 scale).
TEST(export_fp4, mxfp4_and_mxfp8_e8m0_scales) {
    std::vector<float> row;
    for (int i = 0; i < 2; ++i) row.insert(row.end(), fp4_grid.begin(), fp4_grid.end());
    // absmax 6 -> rp2 4 -> e = 127 + 2 - 2 = 127 (scale 1), q = w.
    auto out = by_name(compress_module("m", preset("MXFP4A16"), "mxfp4-pack-quantized",
                                       {{"weight", f32(row, {1, 32}), ""}}, at::kBFloat16));
    EXPECT_EQ(out.size(), 2u);
    expect_tensor(out, "weight_packed", "U8", {1, 16});
    expect_tensor(out, "weight_scale", "U8", {1, 1});
    EXPECT_EQ(ints<int>(out["weight_scale"].tensor), (std::vector<int>{127}));
    std::vector<int> bytes = fp4_grid_bytes;
    bytes.insert(bytes.end(), fp4_grid_bytes.begin(), fp4_grid_bytes.end());
    EXPECT_EQ(ints<int>(out["weight_packed"].tensor), bytes);
    // A stored scale of 0.5 -> 126.
    std::vector<float> half;
    for (float v : row) half.push_back(v / 2);
    out = by_name(compress_module("m", preset("MXFP4A16"), "mxfp4-pack-quantized",
                                  {{"weight", f32(half, {1, 32}), ""}, {"weight_scale", f32({0.5}, {1, 1}), ""}},
                                  at::kBFloat16));
    EXPECT_EQ(ints<int>(out["weight_scale"].tensor), (std::vector<int>{126}));
    EXPECT_EQ(ints<int>(out["weight_packed"].tensor), bytes);

    // MXFP8: absmax 448 = 1.75 * 2^8 rounds up to 512 -> e = 127 + 9 - 8 = 128 (scale 2);
    // 448 / 2 = 224 = 1.75 * 2^7 -> E4M3 0 1110 110 = 0x76.
    at::Tensor w = at::zeros({1, 32});
    w[0][0] = 448;
    out = by_name(compress_module("m", preset("MXFP8A16"), "mxfp8-quantized", {{"weight", w, ""}}, at::kBFloat16));
    expect_tensor(out, "weight", "F8_E4M3", {1, 32});
    expect_tensor(out, "weight_scale", "U8", {1, 1});
    EXPECT_EQ(ints<int>(out["weight_scale"].tensor), (std::vector<int>{128}));
    EXPECT_EQ(ints<int>(out["weight"].tensor)[0], 0x76);
}

TEST(export_misc, dense_kv_cache_and_errors) {
    std::vector<saved_tensor> in = {{"weight", at::ones({2, 2}), ""}, {"input_scale", at::ones({1}), ""}};
    auto out = compress_module("m", preset("FP8"), "dense", in, at::kBFloat16);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].name, "weight");

    auto kv = quant::args_from_json({{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}}, "kv");
    auto kvo = by_name(compress_kv_cache("attn", kv,
                                         {{"k_scale", f32({0.5}, {1}), ""},
                                          {"v_scale", f32({0.25}, {1}), ""},
                                          {"k_zero_point", at::zeros({1}), ""}},
                                         at::kBFloat16));
    EXPECT_EQ(kvo.size(), 2u);
    expect_tensor(kvo, "k_scale", "BF16", {1});
    expect_tensor(kvo, "v_scale", "BF16", {1});

    // FP4 weights cannot go into an int/float/naive format.
    EXPECT_NE(error_of([&] {
                  compress_module("m", preset("NVFP4A16"), "naive-quantized", {{"weight", at::ones({1, 16}), ""}},
                                  at::kFloat);
              }).find("FP4"),
              std::string::npos);
    // Asymmetric stored qparams need their zero point.
    EXPECT_NE(error_of([&] {
                  compress_module("m", preset("W4A16_ASYM"), "pack-quantized",
                                  {{"weight", at::ones({1, 128}), ""}, {"weight_scale", at::ones({1, 1}), ""}},
                                  at::kFloat);
              }).find("weight_zero_point"),
              std::string::npos);
}

// ---------------------------------------------------------------- quantization_config

namespace {

json tiny_config(int64_t hidden = 128, int64_t inter = 256) {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", hidden},
            {"intermediate_size", inter},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"vocab_size", 256},
            {"max_position_embeddings", 64},
            {"tie_word_embeddings", false}};
}

// A Llama model's modules with `scheme_for(name, class)` attached.
template <class F> std::vector<module_entry> entries(F scheme_for) {
    auto m = causal_lm::random(model_config::from_json(tiny_config(32, 64)), 1);
    std::vector<module_entry> out;
    for (module *mod : m->modules())
        out.push_back({mod->name(), mod->class_name(), scheme_for(mod->name(), mod->class_name())});
    return out;
}

std::optional<quant_scheme> linear_but_lm_head(const std::string &name, const std::string &cls, const quant_scheme &s) {
    if (cls == "Linear" && name != "lm_head") return s;
    return std::nullopt;
}

const char *w4a16_gptq = R"({
  "config_groups": {
    "group_0": {
      "format": "pack-quantized",
      "input_activations": null,
      "output_activations": null,
      "targets": ["Linear"],
      "weights": {
        "actorder": "static", "block_structure": null, "dynamic": false,
        "group_size": 128, "num_bits": 4, "observer": "memoryless_minmax",
        "observer_kwargs": {}, "scale_dtype": null, "strategy": "group",
        "symmetric": true, "type": "int", "zp_dtype": null
      }
    }
  },
  "format": "pack-quantized",
  "global_compression_ratio": null,
  "ignore": ["lm_head"],
  "kv_cache_scheme": null,
  "quant_method": "compressed-tensors",
  "quantization_status": "compressed",
  "sparsity_config": {},
  "transform_config": {},
  "version": "0.18.0"
})";

const char *fp8_dynamic = R"({
  "config_groups": {
    "group_0": {
      "format": "float-quantized",
      "input_activations": {
        "actorder": null, "block_structure": null, "dynamic": true,
        "group_size": null, "num_bits": 8, "observer": null,
        "observer_kwargs": {}, "scale_dtype": null, "strategy": "token",
        "symmetric": true, "type": "float", "zp_dtype": null
      },
      "output_activations": null,
      "targets": ["Linear"],
      "weights": {
        "actorder": null, "block_structure": null, "dynamic": false,
        "group_size": null, "num_bits": 8, "observer": "memoryless_minmax",
        "observer_kwargs": {}, "scale_dtype": null, "strategy": "channel",
        "symmetric": true, "type": "float", "zp_dtype": null
      }
    }
  },
  "format": "float-quantized",
  "global_compression_ratio": null,
  "ignore": ["lm_head"],
  "kv_cache_scheme": null,
  "quant_method": "compressed-tensors",
  "quantization_status": "compressed",
  "sparsity_config": {},
  "transform_config": {},
  "version": "0.18.0"
})";

} // namespace

TEST(export_config, w4a16_matches_the_reference_example) {
    quant_scheme gptq = preset("W4A16");
    gptq.weights->actorder = quant::actorder_kind::static_; // GPTQModifier's default
    auto plan = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, gptq); }));
    EXPECT_EQ(plan.config, json::parse(w4a16_gptq)) << plan.config.dump(2);
    EXPECT_EQ(plan.model_format, "pack-quantized");
    EXPECT_EQ(plan.formats.size(), 14u); // 7 Linear per layer, 2 layers

    // RTN (QuantizationModifier) leaves actorder null.
    auto rtn = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("W4A16")); }));
    json expected = json::parse(w4a16_gptq);
    expected["config_groups"]["group_0"]["weights"]["actorder"] = nullptr;
    EXPECT_EQ(rtn.config, expected);
    // Keys sorted at every level in the text, as json.dump(sort_keys=True).
    const std::string text = rtn.config.dump(2);
    EXPECT_LT(text.find("\"config_groups\""), text.find("\"format\""));
    EXPECT_LT(text.find("\"actorder\""), text.find("\"block_structure\""));
}

TEST(export_config, fp8_dynamic_matches_the_reference_example) {
    auto plan = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("FP8_DYNAMIC")); }));
    EXPECT_EQ(plan.config, json::parse(fp8_dynamic)) << plan.config.dump(2);
}

TEST(export_config, w8a8_nvfp4a16_w4a16_asym) {
    auto w8a8 = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("W8A8")); }));
    EXPECT_EQ(w8a8.config["format"], "int-quantized");
    const json &g = w8a8.config["config_groups"]["group_0"];
    EXPECT_EQ(g["format"], "int-quantized");
    EXPECT_EQ(g["weights"]["strategy"], "channel");
    EXPECT_EQ(g["weights"]["num_bits"], 8);
    EXPECT_EQ(g["weights"]["type"], "int");
    EXPECT_EQ(g["input_activations"]["strategy"], "token");
    EXPECT_EQ(g["input_activations"]["dynamic"], true);
    EXPECT_EQ(g["input_activations"]["observer"], nullptr);

    auto nv = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("NVFP4A16")); }));
    const json &w = nv.config["config_groups"]["group_0"]["weights"];
    EXPECT_EQ(nv.config["format"], "nvfp4-pack-quantized");
    EXPECT_EQ(w["strategy"], "tensor_group");
    EXPECT_EQ(w["group_size"], 16);
    EXPECT_EQ(w["num_bits"], 4);
    EXPECT_EQ(w["type"], "float");
    EXPECT_EQ(w["scale_dtype"], "torch.float8_e4m3fn");
    EXPECT_EQ(nv.config["config_groups"]["group_0"]["input_activations"], nullptr);

    auto nvfp4 = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("NVFP4")); }));
    const json &in = nvfp4.config["config_groups"]["group_0"]["input_activations"];
    EXPECT_EQ(in["dynamic"], "local");
    EXPECT_EQ(in["observer"], "static_minmax");

    auto asym = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("W4A16_ASYM")); }));
    EXPECT_EQ(asym.config["config_groups"]["group_0"]["weights"]["symmetric"], false);
    EXPECT_EQ(asym.config["config_groups"]["group_0"]["weights"]["zp_dtype"], "torch.int8");

    auto mx = plan_quantization(entries([&](auto &n, auto &c) { return linear_but_lm_head(n, c, preset("MXFP4A16")); }));
    EXPECT_EQ(mx.config["format"], "mxfp4-pack-quantized");
    EXPECT_EQ(mx.config["config_groups"]["group_0"]["weights"]["scale_dtype"], "torch.uint8");
    EXPECT_EQ(mx.config["config_groups"]["group_0"]["weights"]["group_size"], 32);
}

TEST(export_config, mixed_precision_groups_in_module_order_and_ignore) {
    // Attention projections FP8_DYNAMIC, MLP W4A16, layer 1's down_proj left out, lm_head left out.
    auto plan = plan_quantization(entries([&](const std::string &n, const std::string &c) -> std::optional<quant_scheme> {
        if (c != "Linear" || n == "lm_head" || n == "model.layers.1.mlp.down_proj") return std::nullopt;
        if (n.find("self_attn") != std::string::npos) return preset("FP8_DYNAMIC");
        return preset("W4A16");
    }));
    const json &c = plan.config;
    EXPECT_EQ(c["format"], "mixed-precision");
    ASSERT_EQ(c["config_groups"].size(), 2u);
    EXPECT_EQ(c["config_groups"]["group_0"]["format"], "float-quantized"); // q_proj comes first
    EXPECT_EQ(c["config_groups"]["group_1"]["format"], "pack-quantized");
    EXPECT_EQ(c["ignore"], json({"model.layers.1.mlp.down_proj", "lm_head"}));
    EXPECT_EQ(plan.formats.at("model.layers.0.mlp.up_proj"), "pack-quantized");
    EXPECT_EQ(plan.formats.at("model.layers.0.self_attn.o_proj"), "float-quantized");

    // Equal schemes with different targets are different groups (compressed-tensors compares all).
    auto two = plan_quantization(entries([&](const std::string &n, const std::string &c) -> std::optional<quant_scheme> {
        if (c != "Linear" || n == "lm_head") return std::nullopt;
        return quant::preset_scheme("W4A16", {n.find("mlp") != std::string::npos ? "re:.*mlp.*" : "Linear"});
    }));
    EXPECT_EQ(two.config["config_groups"].size(), 2u);
    EXPECT_EQ(two.config["format"], "pack-quantized");
    EXPECT_EQ(two.config["config_groups"]["group_1"]["targets"], json({"re:.*mlp.*"}));

    // Nothing quantized: no quantization_config at all.
    EXPECT_TRUE(plan_quantization(entries([](auto &, auto &) { return std::optional<quant_scheme>(); })).config.is_null());
}

TEST(export_config, kv_cache_scheme_comes_from_attention_modules) {
    quant_scheme kv;
    kv.targets = {"re:.*self_attn$"};
    kv.input_activations = quant::args_from_json({{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}}, "kv");
    auto plan = plan_quantization(entries([&](const std::string &n, const std::string &c) -> std::optional<quant_scheme> {
        if (c == "LlamaAttention") return kv;
        return linear_but_lm_head(n, c, preset("FP8_DYNAMIC"));
    }));
    EXPECT_EQ(plan.config["kv_cache_scheme"], quant::args_to_json(*kv.input_activations));
    EXPECT_EQ(plan.config["config_groups"].size(), 1u);
    EXPECT_EQ(plan.config["ignore"], json({"lm_head"})); // attention modules are not a quantized type
    EXPECT_EQ(plan.kv_modules.size(), 2u);
}

// ---------------------------------------------------------------- round trips

namespace {

struct round_trip_case {
    std::string preset;
    at::ScalarType dtype;
    bool gptq_style; // weights already on the grid (GPTQ) instead of unchanged (RTN)
};

std::string case_name(const testing::TestParamInfo<round_trip_case> &i) {
    return i.param.preset + (i.param.dtype == at::kFloat ? "_fp32" : "_bf16") + (i.param.gptq_style ? "_gptq" : "");
}

class export_round_trip : public testing::TestWithParam<round_trip_case> {};

} // namespace

TEST_P(export_round_trip, export_load_equals_fake_quantize) {
    const auto &p = GetParam();
    auto m = causal_lm::random(model_config::from_json(tiny_config()), 7, p.dtype);
    const quant_scheme scheme = preset(p.preset);
    const quant::quant_args &w = *scheme.weights;
    std::map<std::string, std::string> schemes;
    std::map<std::string, at::Tensor> expected;
    std::map<std::string, at::Tensor> untouched;
    for (module *mod : m->modules()) {
        for (const auto &[k, t] : mod->params) untouched[mod->name() + "." + k] = t.clone();
        if (mod->class_name() != "Linear" || mod->name() == "lm_head") continue;
        schemes[mod->name()] = quant::scheme_to_json(scheme).dump();
        at::Tensor &weight = mod->params.at("weight");
        // RTN: the plugin stores qparams and leaves the weight; GPTQ also rounds the weight.
        const quant::qparams qp = quant::qparams_observe(w, weight);
        mod->buffers["weight_scale"] = qp.scale;
        if (!w.symmetric) mod->buffers["weight_zero_point"] = qp.zero_point;
        if (qp.global_scale.defined()) mod->buffers["weight_global_scale"] = qp.global_scale;
        expected[mod->name() + ".weight"] = quant::fake_quantize(w, weight, qp).to(p.dtype);
        if (p.gptq_style) weight = expected[mod->name() + ".weight"].clone();
    }
    llmc::test::temp_dir dir("export");
    const std::string out = dir / "model";
    const export_report report = export_compressed(*m, schemes, out);
    EXPECT_EQ(report.modules.size(), 14u);
    EXPECT_LT(report.bytes_after, report.bytes_before);

    // Tensors exactly as section 6.2 says, for one [256 -> 128] down_proj.
    safetensors_model st(out);
    const std::string d = "model.layers.1.mlp.down_proj.";
    const std::string sdt = p.dtype == at::kFloat ? "F32" : "BF16";
    auto has = [&](const std::string &n, const std::string &dtype, std::vector<int64_t> shape) {
        ASSERT_TRUE(st.contains(d + n)) << d + n;
        EXPECT_EQ(st.info(d + n).dtype, dtype) << n;
        EXPECT_EQ(st.info(d + n).shape, shape) << n;
    };
    std::vector<std::string> names;
    for (const auto &n : st.names())
        if (n.rfind(d, 0) == 0) names.push_back(n.substr(d.size()));
    std::sort(names.begin(), names.end());
    if (p.preset == "W4A16") {
        has("weight_packed", "I32", {128, 32});
        has("weight_scale", sdt, {128, 2});
        has("weight_shape", "I64", {2});
        EXPECT_EQ(names, (std::vector<std::string>{"weight_packed", "weight_scale", "weight_shape"}));
    } else if (p.preset == "W4A16_ASYM") {
        has("weight_packed", "I32", {128, 32});
        has("weight_scale", sdt, {128, 2});
        has("weight_zero_point", "I32", {16, 2});
        EXPECT_EQ(names.size(), 4u);
    } else if (p.preset == "W8A8") {
        has("weight", "I8", {128, 256});
        has("weight_scale", sdt, {128, 1});
        EXPECT_EQ(names.size(), 2u);
    } else if (p.preset == "FP8_DYNAMIC") {
        has("weight", "F8_E4M3", {128, 256});
        has("weight_scale", sdt, {128, 1});
        EXPECT_EQ(names.size(), 2u);
    } else if (p.preset == "NVFP4A16") {
        has("weight_packed", "U8", {128, 128});
        has("weight_scale", "F8_E4M3", {128, 16});
        has("weight_global_scale", "F32", {1});
        EXPECT_EQ(names.size(), 3u);
    } else if (p.preset == "FP8_BLOCK") {
        has("weight", "F8_E4M3", {128, 256});
        has("weight_scale", sdt, {1, 2});
        EXPECT_EQ(names.size(), 2u);
    } else if (p.preset == "MXFP8A16") {
        has("weight", "F8_E4M3", {128, 256});
        has("weight_scale", "U8", {128, 8});
        EXPECT_EQ(names.size(), 2u);
    } else if (p.preset == "MXFP4A16") {
        has("weight_packed", "U8", {128, 128});
        has("weight_scale", "U8", {128, 8});
        EXPECT_EQ(names.size(), 2u);
    }
    EXPECT_EQ(st.info("lm_head.weight").dtype, sdt);

    // config.json: compressed-tensors' quantization_config, json.dump(indent=2, sort_keys=True).
    const std::string text = llmc::test::read_file(out + "/config.json");
    const json cfg = json::parse(text);
    EXPECT_EQ(cfg["quantization_config"], report.quantization_config);
    EXPECT_EQ(cfg["quantization_config"]["ignore"], json({"lm_head"}));
    EXPECT_EQ(cfg["quantization_config"]["format"], infer_module_format("Linear", scheme));
    EXPECT_EQ(text, cfg.dump(2, ' ', true));

    // Read back, eagerly and lazily: quantized weights dense and bitwise equal to the
    // fake-quantized originals; everything else unchanged.
    for (bool lazy : {false, true}) {
        auto back = causal_lm::load(out, p.dtype, lazy);
        if (lazy) back->layers_onload_all();
        for (module *mod : back->modules())
            for (const auto &[k, t] : mod->params) {
                const std::string n = mod->name() + "." + k;
                auto e = expected.find(n);
                const at::Tensor &want = e != expected.end() ? e->second : untouched.at(n);
                ASSERT_EQ(t.scalar_type(), p.dtype) << n;
                ASSERT_EQ(t.sizes(), want.sizes()) << n;
                EXPECT_TRUE(at::equal(t, want)) << n << (lazy ? " (lazy)" : "");
            }
        // Saving the dense model again drops the quantization_config.
        if (!lazy) {
            back->save(dir / "dense");
            EXPECT_FALSE(json::parse(llmc::test::read_file(dir / "dense/config.json")).contains("quantization_config"));
        }
    }
}

INSTANTIATE_TEST_SUITE_P(formats, export_round_trip,
                         testing::Values(round_trip_case{"W4A16", at::kBFloat16, false},
                                         round_trip_case{"W4A16", at::kBFloat16, true},
                                         round_trip_case{"W4A16", at::kFloat, false},
                                         round_trip_case{"W4A16_ASYM", at::kBFloat16, false},
                                         round_trip_case{"W4A16_ASYM", at::kFloat, true},
                                         round_trip_case{"W8A8", at::kBFloat16, false},
                                         round_trip_case{"FP8_DYNAMIC", at::kBFloat16, false},
                                         round_trip_case{"FP8_DYNAMIC", at::kFloat, true},
                                         round_trip_case{"NVFP4A16", at::kBFloat16, false},
                                         round_trip_case{"NVFP4A16", at::kBFloat16, true},
                                         round_trip_case{"MXFP4A16", at::kBFloat16, false},
                                         round_trip_case{"MXFP4A16", at::kFloat, false},
                                         round_trip_case{"MXFP8A16", at::kBFloat16, false},
                                         round_trip_case{"FP8_BLOCK", at::kBFloat16, false}),
                         case_name);

// Actorder group: a permuted g_idx survives the round trip.
TEST(export_round_trip_misc, actorder_group_g_idx) {
    auto m = causal_lm::random(model_config::from_json(tiny_config()), 9, at::kBFloat16);
    quant_scheme scheme = preset("W4A16");
    scheme.weights->group_size = 32;
    scheme.weights->actorder = quant::actorder_kind::group;
    const quant::quant_args &w = *scheme.weights;
    std::map<std::string, std::string> schemes;
    std::map<std::string, at::Tensor> expected;
    for (module *mod : m->modules()) {
        if (mod->class_name() != "Linear" || mod->name() == "lm_head") continue;
        schemes[mod->name()] = quant::scheme_to_json(scheme).dump();
        const at::Tensor &weight = mod->params.at("weight");
        const int64_t in = weight.size(1);
        at::Tensor g_idx = at::div(at::randperm(in, at::kLong), 32, "floor").to(at::kInt);
        const quant::qparams qp = quant::qparams_observe(w, weight, quant::observed_role::weight, nullptr, &g_idx);
        mod->buffers["weight_scale"] = qp.scale;
        mod->buffers["weight_g_idx"] = g_idx;
        expected[mod->name() + ".weight"] = quant::fake_quantize(w, weight, qp, &g_idx).to(at::kBFloat16);
    }
    llmc::test::temp_dir dir("export-gidx");
    export_compressed(*m, schemes, dir / "m");
    safetensors_model st(dir / "m");
    EXPECT_EQ(st.info("model.layers.0.mlp.gate_proj.weight_g_idx").dtype, "I32");
    EXPECT_EQ(st.info("model.layers.0.mlp.gate_proj.weight_g_idx").shape, (std::vector<int64_t>{128}));
    auto back = causal_lm::load(dir / "m", at::kBFloat16);
    for (const auto &[n, want] : expected) {
        const auto dot = n.rfind('.');
        const at::Tensor &got = back->find(n.substr(0, dot))->params.at("weight");
        EXPECT_TRUE(at::equal(got, want)) << n;
    }
}

// Modules without stored qparams get them computed at export; the config still follows 6.3.
TEST(export_round_trip_misc, qparams_computed_when_absent_and_streamed_from_disk) {
    llmc::test::temp_dir dir("export-lazy");
    {
        auto m = causal_lm::random(model_config::from_json(tiny_config()), 11, at::kBFloat16);
        m->save(dir / "src");
    }
    auto m = causal_lm::load(dir / "src", at::kBFloat16, /*lazy=*/true);
    std::map<std::string, std::string> schemes;
    for (module *mod : m->modules())
        if (mod->class_name() == "Linear" && mod->name() != "lm_head")
            schemes[mod->name()] = quant::scheme_to_json(preset("NVFP4A16")).dump();
    export_compressed(*m, schemes, dir / "out");
    EXPECT_FALSE(m->layer_resident(0)); // saved layer by layer, released again
    safetensors_model st(dir / "out");
    // Fused partners share one global scale (vLLM needs it for q/k/v and gate/up).
    auto gs = [&](const std::string &n) { return st.tensor("model.layers.0." + n + ".weight_global_scale").item<float>(); };
    EXPECT_EQ(gs("self_attn.q_proj"), gs("self_attn.k_proj"));
    EXPECT_EQ(gs("self_attn.q_proj"), gs("self_attn.v_proj"));
    EXPECT_EQ(gs("mlp.gate_proj"), gs("mlp.up_proj"));
    auto back = causal_lm::load(dir / "out", at::kBFloat16);
    auto src = causal_lm::load(dir / "src", at::kBFloat16);
    const at::Tensor &got = back->find("model.layers.1.mlp.down_proj")->params.at("weight");
    const at::Tensor &orig = src->find("model.layers.1.mlp.down_proj")->params.at("weight");
    const auto args = *preset("NVFP4A16").weights;
    EXPECT_TRUE(at::equal(got, quant::fake_quantize(args, orig, quant::qparams_observe(args, orig)).to(at::kBFloat16)));
}

// The loader side: preset-form config groups, and a clear error when compressed tensors are absent.
TEST(export_read_back, preset_groups_and_missing_tensors) {
    llmc::test::temp_dir dir("export-read");
    auto m = causal_lm::random(model_config::from_json(tiny_config()), 13, at::kBFloat16);
    std::map<std::string, std::string> schemes;
    for (module *mod : m->modules())
        if (mod->class_name() == "Linear" && mod->name() != "lm_head")
            schemes[mod->name()] = quant::scheme_to_json(preset("W4A16")).dump();
    export_compressed(*m, schemes, dir / "q");
    auto reference = causal_lm::load(dir / "q", at::kBFloat16);

    // config_groups: {"W4A16": ["Linear"]} without per-group format: the model format applies.
    json cfg = json::parse(llmc::test::read_file(dir / "q/config.json"));
    cfg["quantization_config"]["config_groups"] = {{"W4A16", {"Linear"}}};
    llmc::test::write_file(dir / "q/config.json", cfg.dump(2));
    auto back = causal_lm::load(dir / "q", at::kBFloat16);
    for (const char *n : {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"})
        EXPECT_TRUE(at::equal(back->find(n)->params.at("weight"), reference->find(n)->params.at("weight"))) << n;

    // A dense checkpoint that claims to be packed names what is missing.
    m->save(dir / "dense");
    json dense = json::parse(llmc::test::read_file(dir / "dense/config.json"));
    dense["quantization_config"] = cfg["quantization_config"];
    llmc::test::write_file(dir / "dense/config.json", dense.dump(2));
    const std::string err = error_of([&] { causal_lm::load(dir / "dense", at::kBFloat16); });
    EXPECT_NE(err.find("weight_shape' is missing"), std::string::npos) << err;
}

// kv cache: a scheme on the attention modules gives kv_cache_scheme and k/v scales in the model
// dtype; the checkpoint loads back (the scales are accepted, not applied).
TEST(export_read_back, kv_cache_scales) {
    llmc::test::temp_dir dir("export-kv");
    auto m = causal_lm::random(model_config::from_json(tiny_config()), 15, at::kBFloat16);
    const quant_scheme fp8 = preset("FP8_DYNAMIC");
    quant_scheme kv;
    kv.targets = {"re:.*self_attn$"};
    kv.input_activations = quant::args_from_json({{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}}, "kv");
    std::map<std::string, std::string> schemes;
    for (module *mod : m->modules()) {
        if (mod->class_name() == "Linear" && mod->name() != "lm_head") schemes[mod->name()] = quant::scheme_to_json(fp8).dump();
        if (mod->class_name() == "LlamaAttention") {
            schemes[mod->name()] = quant::scheme_to_json(kv).dump();
            mod->buffers["k_scale"] = f32({0.5}, {1});
            mod->buffers["v_scale"] = f32({0.25}, {1});
        }
    }
    const export_report r = export_compressed(*m, schemes, dir / "kv");
    EXPECT_EQ(r.quantization_config["kv_cache_scheme"], quant::args_to_json(*kv.input_activations));
    EXPECT_EQ(r.quantization_config["config_groups"].size(), 1u);
    safetensors_model st(dir / "kv");
    EXPECT_EQ(st.info("model.layers.1.self_attn.k_scale").dtype, "BF16");
    EXPECT_EQ(st.info("model.layers.1.self_attn.v_scale").shape, (std::vector<int64_t>{1}));
    EXPECT_NO_THROW(causal_lm::load(dir / "kv", at::kBFloat16));
}
