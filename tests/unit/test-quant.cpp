// Golden-value tests of the quantization numerics (host/src/quant): args and presets against
// compressed-tensors 0.18's config dicts, FP8/FP4/E8M0 formats, qparams and fake-quantization
// precision, observers and packing. Expected values are worked out by hand in the comments.
#include "quant/args.h"
#include "quant/float_formats.h"
#include "quant/packing.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace llmc::quant;
using json = nlohmann::json;

namespace {

at::Tensor f32(std::vector<float> v, std::vector<int64_t> shape) {
    return at::tensor(v, at::kFloat).reshape(shape);
}

std::vector<float> values(const at::Tensor &t) {
    auto c = t.to(at::kFloat).contiguous().flatten();
    return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

template <class T> std::vector<T> ints(const at::Tensor &t) {
    auto c = t.to(at::kLong).contiguous().flatten();
    std::vector<T> out;
    for (int64_t i = 0; i < c.numel(); ++i) out.push_back(static_cast<T>(c.data_ptr<int64_t>()[i]));
    return out;
}

// The error message of `f`, or "" when it does not throw llmc::error.
template <class F> std::string error_of(F f) {
    try {
        f();
    } catch (const llmc::error &e) {
        return e.what();
    }
    return "";
}

bool same_bits(const at::Tensor &a, const at::Tensor &b) {
    return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
           at::equal(a.contiguous(), b.contiguous());
}

quant_args args_of(const std::string &text) { return args_from_json(json::parse(text), "test"); }

} // namespace

// ---------------------------------------------------------------- args

TEST(QuantArgs, DefaultsAndStrategyInference) {
    auto a = args_of("{}");
    EXPECT_EQ(a.num_bits, 8);
    EXPECT_EQ(a.type, quant_type::int_);
    EXPECT_TRUE(a.symmetric);
    EXPECT_EQ(a.strategy, quant_strategy::tensor);
    EXPECT_EQ(a.observer, std::optional<std::string>("memoryless_minmax"));
    EXPECT_EQ(a.zp_dtype, dtype_id::int8);
    EXPECT_EQ(args_of(R"({"group_size": 128})").strategy, quant_strategy::group);
    EXPECT_EQ(args_of(R"({"group_size": -1})").strategy, quant_strategy::channel);
    EXPECT_EQ(args_of(R"({"num_bits": 4.0, "type": "INT", "strategy": "Channel"})").strategy,
              quant_strategy::channel);
    // zp dtype defaults: int16 above 8 bits, fp8 for both float widths.
    EXPECT_EQ(args_of(R"({"num_bits": 12})").zp_dtype, dtype_id::int16);
    EXPECT_EQ(args_of(R"({"num_bits": 4, "type": "float", "strategy": "tensor_group",
                          "group_size": 16})")
                  .zp_dtype,
              dtype_id::float8_e4m3fn);
    EXPECT_EQ(args_of(R"({"type": "float"})").zp_dtype, dtype_id::float8_e4m3fn);
}

TEST(QuantArgs, ValidationErrorsNameTheField) {
    auto err = [](const std::string &t) { return error_of([&] { args_of(t); }); };
    EXPECT_NE(err(R"({"strategy": "token"})").find("test.strategy"), std::string::npos);
    EXPECT_NE(err(R"({"strategy": "group"})").find("test.group_size"), std::string::npos);
    EXPECT_NE(err(R"({"strategy": "tensor_group", "group_size": 0})").find("test.group_size"),
              std::string::npos);
    EXPECT_NE(err(R"({"group_size": -2})").find("test.group_size"), std::string::npos);
    EXPECT_NE(err(R"({"group_size": 0})").find("test.group_size"), std::string::npos);
    EXPECT_NE(err(R"({"strategy": "channel", "group_size": 64})").find("test.group_size"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "block"})").find("test.block_structure"), std::string::npos);
    EXPECT_NE(err(R"({"block_structure": [128, 128]})").find("test.block_structure"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "block", "block_structure": [1, 2, 3]})")
                  .find("test.block_structure"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "channel", "actorder": "group"})").find("test.actorder"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "channel", "actorder": "dynamic"})").find("test.actorder"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "channel", "dynamic": true})").find("test.dynamic"),
              std::string::npos);
    EXPECT_NE(err(R"({"strategy": "tensor", "dynamic": "local"})").find("test.dynamic"),
              std::string::npos);
    EXPECT_NE(err(R"({"dynamic": "yes"})").find("test.dynamic"), std::string::npos);
    EXPECT_NE(err(R"({"num_bits": "4"})").find("test.num_bits"), std::string::npos);
    EXPECT_NE(err(R"({"num_bits": 6, "type": "float"})").find("test.num_bits"), std::string::npos);
    EXPECT_NE(err(R"({"type": "fixed"})").find("test.type"), std::string::npos);
    EXPECT_NE(err(R"({"scale_dtype": "torch.float7"})").find("test.scale_dtype"),
              std::string::npos);
    EXPECT_NE(err(R"({"actorder": "sometimes"})").find("test.actorder"), std::string::npos);
    EXPECT_NE(err(R"({"observer_kwargs": null})").find("test.observer_kwargs"),
              std::string::npos);
    // Unknown keys name the key and where.
    auto unknown = err(R"({"num_bits": 4, "bits": 4})");
    EXPECT_NE(unknown.find("'bits'"), std::string::npos);
    EXPECT_NE(unknown.find("test"), std::string::npos);
}

TEST(QuantArgs, BlockActorderDynamicObserver) {
    auto b = args_of(R"({"strategy": "block", "block_structure": "128x64"})");
    EXPECT_EQ(b.block_structure, (std::array<int, 2>{128, 64}));
    EXPECT_EQ(args_to_json(b)["block_structure"], json::parse("[128, 64]"));

    // Aliases keep their spelling in the dump; their meaning goes through canonical().
    auto st = args_of(R"({"group_size": 128, "actorder": "static"})");
    EXPECT_EQ(args_to_json(st)["actorder"], "static");
    EXPECT_EQ(canonical(*st.actorder), actorder_kind::weight);
    auto dy = args_of(R"({"group_size": 128, "actorder": "DYNAMIC"})");
    EXPECT_EQ(canonical(*dy.actorder), actorder_kind::group);
    EXPECT_EQ(args_to_json(args_of(R"({"group_size": 128, "actorder": true})"))["actorder"],
              "group");
    EXPECT_FALSE(args_of(R"({"group_size": 128, "actorder": false})").actorder.has_value());
    // weight ordering is allowed with any strategy.
    EXPECT_NO_THROW(args_of(R"({"strategy": "channel", "actorder": "weight"})"));

    // Observers: dynamic drops any observer, local defaults to minmax, static to memoryless.
    EXPECT_FALSE(args_of(R"({"strategy": "token", "dynamic": true, "observer": "minmax"})")
                     .observer.has_value());
    auto local = args_of(R"({"num_bits": 4, "type": "float", "strategy": "tensor_group",
                             "group_size": 16, "dynamic": "LOCAL"})");
    EXPECT_EQ(local.dynamic, dynamic_kind::local);
    EXPECT_EQ(local.observer, std::optional<std::string>("minmax"));
    EXPECT_EQ(args_to_json(local)["dynamic"], "local");
    EXPECT_EQ(args_of(R"({"observer": "mse"})").observer, std::optional<std::string>("mse"));
}

TEST(QuantArgs, DtypesAndZeroPointDump) {
    auto a = args_of(R"({"num_bits": 4, "type": "float", "strategy": "tensor_group",
                         "group_size": 16, "scale_dtype": "float8_e4m3fn"})");
    EXPECT_EQ(a.scale_dtype, dtype_id::float8_e4m3fn);
    EXPECT_EQ(args_to_json(a)["scale_dtype"], "torch.float8_e4m3fn");
    EXPECT_EQ(args_to_json(a)["zp_dtype"], nullptr); // symmetric => null
    auto asym = args_of(R"({"num_bits": 4, "group_size": 128, "symmetric": false})");
    EXPECT_EQ(args_to_json(asym)["zp_dtype"], "torch.int8");
    EXPECT_EQ(dtype_from_string("torch.half"), dtype_id::float16);
    EXPECT_EQ(to_string(*dtype_from_string("float")), "torch.float32");
    EXPECT_EQ(dtype_eps(dtype_id::bfloat16), std::ldexp(1.0, -7));
    EXPECT_EQ(dtype_eps(dtype_id::float8_e4m3fn), 0.125);
    // The dump round-trips.
    EXPECT_EQ(args_from_json(args_to_json(asym), "again"), asym);
    EXPECT_EQ(args_from_json(args_to_json(a), "again"), a);
}

TEST(QuantScheme, ParseDumpAndValidate) {
    auto s = scheme_from_json(json::parse(R"({"targets": ["Linear"], "weights": {"num_bits": 4,
        "group_size": 128}, "format": "pack-quantized"})"),
                              "config_groups.group_0");
    EXPECT_EQ(s.targets, std::vector<std::string>{"Linear"});
    EXPECT_EQ(scheme_to_json(s)["format"], "pack-quantized");
    EXPECT_EQ(scheme_to_json(s)["input_activations"], nullptr);
    EXPECT_EQ(scheme_from_json(scheme_to_json(s), "again"), s);

    auto err = [](const std::string &t) {
        return error_of([&] { scheme_from_json(json::parse(t), "g"); });
    };
    EXPECT_NE(err(R"({"weights": null})").find("g.targets"), std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "format": "mixed-precision"})").find("g.format"),
              std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "format": "zip"})").find("g.format"),
              std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "input_activations": {"strategy": "channel"}})")
                  .find("g.input_activations.strategy"),
              std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "input_activations": {"group_size": 128,
        "dynamic": true, "actorder": "weight"}})")
                  .find("g.input_activations.actorder"),
              std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "input_activations": {"strategy": "token"}})")
                  .find("g.input_activations.strategy"),
              std::string::npos);
    EXPECT_NE(err(R"({"targets": ["Linear"], "kv": {}})").find("'kv'"), std::string::npos);
}

// ---------------------------------------------------------------- presets

TEST(QuantPresets, W4A16MatchesTheSavedConfig) {
    auto s = preset_scheme("w4a16", {"Linear"});
    ASSERT_TRUE(s.weights);
    EXPECT_FALSE(s.input_activations);
    // GPTQModifier sets actorder "static"; the rest is the preset.
    s.weights->actorder = actorder_kind::static_;
    auto expected = json::parse(R"({
        "actorder": "static", "block_structure": null, "dynamic": false,
        "group_size": 128, "num_bits": 4, "observer": "memoryless_minmax",
        "observer_kwargs": {}, "scale_dtype": null, "strategy": "group",
        "symmetric": true, "type": "int", "zp_dtype": null})");
    EXPECT_EQ(args_to_json(*s.weights), expected);
    EXPECT_EQ(args_to_json(*s.weights).dump(), expected.dump()); // keys sorted, same order
}

TEST(QuantPresets, FP8DynamicMatchesTheSavedConfig) {
    auto s = preset_scheme("FP8_DYNAMIC", {"Linear"});
    s.format = "float-quantized";
    auto expected = json::parse(R"({
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
      }})");
    EXPECT_EQ(scheme_to_json(s), expected);
}

TEST(QuantPresets, Table) {
    auto w = [](const std::string &n) { return *preset_scheme(n, {"Linear"}).weights; };
    auto in = [](const std::string &n) { return preset_scheme(n, {"Linear"}).input_activations; };

    EXPECT_FALSE(preset_scheme("UNQUANTIZED", {"Linear"}).weights);
    for (int b = 2; b <= 8; ++b) {
        auto a = w("W" + std::to_string(b) + "A16");
        EXPECT_EQ(a.num_bits, b);
        EXPECT_EQ(a.strategy, quant_strategy::group); // 0.18: W8A16 is group 128 too
        EXPECT_EQ(a.group_size, 128);
        EXPECT_TRUE(a.symmetric);
        EXPECT_FALSE(a.is_dynamic());
    }
    EXPECT_FALSE(w("W4A16_ASYM").symmetric);
    EXPECT_EQ(w("W4A16_ASYM").zp_dtype, dtype_id::int8);
    for (int b = 2; b <= 7; ++b) {
        auto i = *in("W" + std::to_string(b) + "A8");
        EXPECT_EQ(w("W" + std::to_string(b) + "A8").num_bits, b);
        EXPECT_EQ(i.num_bits, 8);
        EXPECT_EQ(i.strategy, quant_strategy::token);
        EXPECT_EQ(i.dynamic, dynamic_kind::dynamic);
    }
    for (int b = 2; b <= 4; ++b) EXPECT_EQ(in("W" + std::to_string(b) + "A4")->num_bits, 4);
    for (const char *n : {"W8A8", "INT8", "int8"}) {
        EXPECT_EQ(w(n).strategy, quant_strategy::channel);
        EXPECT_EQ(in(n)->strategy, quant_strategy::token);
        EXPECT_EQ(in(n)->type, quant_type::int_);
    }
    EXPECT_EQ(in("W4AFP8")->type, quant_type::float_);
    EXPECT_EQ(w("FP8").strategy, quant_strategy::tensor);
    EXPECT_EQ(in("FP8")->strategy, quant_strategy::tensor);
    EXPECT_FALSE(in("FP8")->is_dynamic());
    EXPECT_EQ(in("FP8")->observer, std::optional<std::string>("static_minmax"));
    EXPECT_EQ(w("FP8_BLOCK").block_structure, (std::array<int, 2>{128, 128}));
    EXPECT_EQ(in("FP8_BLOCK")->strategy, quant_strategy::group);
    EXPECT_EQ(in("FP8_BLOCK")->group_size, 128);
    EXPECT_TRUE(in("FP8_BLOCK")->is_dynamic());
    for (const char *n : {"NVFP4A16", "NVFP4"}) {
        auto a = w(n);
        EXPECT_EQ(a.strategy, quant_strategy::tensor_group);
        EXPECT_EQ(a.group_size, 16);
        EXPECT_TRUE(a.is_fp4());
        EXPECT_EQ(a.scale_dtype, dtype_id::float8_e4m3fn);
    }
    EXPECT_FALSE(in("NVFP4A16"));
    EXPECT_EQ(in("NVFP4")->dynamic, dynamic_kind::local);
    EXPECT_EQ(in("NVFP4")->observer, std::optional<std::string>("static_minmax"));
    for (const char *n : {"MXFP4A16", "MXFP4", "MXFP8A16", "MXFP8"}) {
        EXPECT_EQ(w(n).strategy, quant_strategy::group);
        EXPECT_EQ(w(n).group_size, 32);
        EXPECT_EQ(w(n).scale_dtype, dtype_id::uint8);
        EXPECT_TRUE(is_mx(w(n)));
    }
    EXPECT_EQ(w("MXFP8").num_bits, 8);
    EXPECT_EQ(in("MXFP4")->dynamic, dynamic_kind::dynamic);
    EXPECT_FALSE(in("MXFP8A16"));

    EXPECT_TRUE(is_preset("fp8_dynamic"));
    EXPECT_FALSE(is_preset("W9A16"));
    EXPECT_EQ(preset_names().size(), 30u);
    auto msg = error_of([] { preset_scheme("W9A16", {"Linear"}); });
    EXPECT_NE(msg.find("W9A16"), std::string::npos);
    EXPECT_NE(msg.find("NVFP4A16"), std::string::npos); // lists the valid names
}

// ---------------------------------------------------------------- FP8 E4M3FN

TEST(FP8, EveryCodeRoundTrips) {
    for (int c = 0; c < 256; ++c) {
        const auto code = static_cast<uint8_t>(c);
        const float v = fp8_e4m3_decode_value(code);
        if ((c & 0x7F) == 0x7F) {
            EXPECT_TRUE(std::isnan(v)) << c;
        }
        EXPECT_EQ(fp8_e4m3_encode_value(v), code) << "code " << c << " value " << v;
    }
    EXPECT_EQ(fp8_e4m3_decode_value(0x7E), 448.0f);
    EXPECT_EQ(fp8_e4m3_decode_value(0x38), 1.0f);
    EXPECT_EQ(fp8_e4m3_decode_value(0x08), std::ldexp(1.0f, -6)); // smallest normal
    EXPECT_EQ(fp8_e4m3_decode_value(0x01), std::ldexp(1.0f, -9)); // smallest subnormal
    EXPECT_EQ(fp8_e4m3_decode_value(0xBC), -1.5f);
    EXPECT_TRUE(std::signbit(fp8_e4m3_decode_value(0x80)));

    // The tensor forms agree with the scalar ones on all codes.
    auto codes = at::arange(256, at::kInt).to(at::kByte);
    auto decoded = fp8_e4m3_decode(codes);
    EXPECT_TRUE(at::equal(fp8_e4m3_encode(decoded), codes));
    auto finite = decoded.masked_select(~at::isnan(decoded));
    EXPECT_TRUE(same_bits(fp8_e4m3_round(finite), finite));
}

TEST(FP8, MidpointsRoundToEven) {
    for (int c = 0; c < 0x7E; ++c) {
        const float lo = fp8_e4m3_decode_value(static_cast<uint8_t>(c));
        const float hi = fp8_e4m3_decode_value(static_cast<uint8_t>(c + 1));
        const float mid = (lo + hi) / 2; // exact in float32
        const uint8_t even = (c % 2 == 0) ? c : c + 1;  // code parity is mantissa parity
        EXPECT_EQ(fp8_e4m3_encode_value(mid), even) << "between codes " << c << " and " << c + 1;
        EXPECT_EQ(fp8_e4m3_encode_value(-mid), even | 0x80);
        // Just off the midpoint goes to the nearer neighbour.
        EXPECT_EQ(fp8_e4m3_encode_value(std::nextafter(mid, 0.0f)), c);
        EXPECT_EQ(fp8_e4m3_encode_value(std::nextafter(mid, 1000.0f)), c + 1);
        // The ATen rounding (used by fake quantization) agrees.
        auto t = f32({mid, -mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}, {4});
        EXPECT_TRUE(at::equal(fp8_e4m3_round(t), fp8_e4m3_decode(fp8_e4m3_encode(t))));
    }
    // 464 is halfway between 448 and the (NaN) 480 slot: to even, 448; beyond saturates.
    EXPECT_EQ(fp8_e4m3_encode_value(464.0f), 0x7E);
    EXPECT_EQ(fp8_e4m3_encode_value(1e6f), 0x7E);
    EXPECT_EQ(fp8_e4m3_encode_value(-std::numeric_limits<float>::infinity()), 0xFE);
    EXPECT_EQ(fp8_e4m3_encode_value(std::numeric_limits<float>::quiet_NaN()), 0x7F);
    EXPECT_EQ(fp8_e4m3_encode_value(-std::numeric_limits<float>::quiet_NaN()), 0xFF);
    EXPECT_EQ(fp8_e4m3_encode_value(-0.0f), 0x80);
    // 300 -> 288 (step 32), 17 -> 16 (tie, even mantissa), tiny -> 0 with sign.
    auto r = fp8_e4m3_round(f32({300.f, 17.f, 1e-5f, -1e-5f, 500.f}, {5}));
    EXPECT_EQ(values(r), (std::vector<float>{288.f, 16.f, 0.f, -0.f, 448.f}));
    EXPECT_TRUE(std::signbit(values(r)[3]));
    EXPECT_TRUE(std::isnan(values(fp8_e4m3_round(f32({NAN}, {1})))[0]));
    // bf16 input keeps its dtype.
    EXPECT_EQ(fp8_e4m3_round(f32({1.f}, {1}).to(at::kBFloat16)).scalar_type(), at::kBFloat16);
}

TEST(FP8, RandomValuesAgreeBetweenEncoderAndRounding) {
    at::manual_seed(65);
    auto x = at::randn({4096}, at::kFloat) * 100;
    EXPECT_TRUE(at::equal(fp8_e4m3_round(x), fp8_e4m3_decode(fp8_e4m3_encode(x))));
    auto tiny = at::randn({4096}, at::kFloat) * 0.01;
    EXPECT_TRUE(at::equal(fp8_e4m3_round(tiny), fp8_e4m3_decode(fp8_e4m3_encode(tiny))));
}

// The tensor encoder (one vectorized loop) against the scalar one, code for code: every bf16 bit
// pattern as float32 (NaNs, infinities, subnormals, -0, both sides of 448 and 464) and a million
// random float32 bit patterns.
TEST(FP8, TensorEncoderEqualsTheScalarOne) {
    auto same = [](const at::Tensor &x, const char *what) {
        const at::Tensor codes = fp8_e4m3_encode(x);
        const at::Tensor xf = x.to(at::kFloat).contiguous();
        const float *v = xf.data_ptr<float>();
        const uint8_t *c = codes.data_ptr<uint8_t>();
        int64_t differ = 0, first = -1;
        for (int64_t i = 0; i < xf.numel(); ++i)
            if (c[i] != fp8_e4m3_encode_value(v[i]) && differ++ == 0) first = i;
        EXPECT_EQ(differ, 0) << what << ": first at " << first << " (" << (first >= 0 ? v[first] : 0.0f) << ")";
    };
    const at::Tensor bf16 = at::arange(65536, at::kInt).to(at::kShort).view(at::kBFloat16);
    same(bf16.to(at::kFloat), "every bf16 as float32");
    at::manual_seed(8);
    same(at::randint(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), {1 << 20}, at::kInt)
             .view(at::kFloat),
         "random float32 bits");
    same(at::tensor(std::vector<float>{448.0f, std::nextafter(448.0f, 0.0f), std::nextafter(448.0f, 1e3f), 464.0f,
                                       -464.0f, -0.0f}),
         "edges");
}

// fp8_e4m3_round's one-pass CPU loop against the chain of tensor ops other devices take, bit for
// bit: every bf16 bit pattern (NaNs, infinities, subnormals, -0), a million random float32 bit
// patterns, and every midpoint of the grid with its neighbours one float ulp away.
TEST(FP8, CpuPassEqualsTheOpChain) {
    auto same = [](const at::Tensor &x, const char *what) {
        const at::Tensor a = fp8_e4m3_round(x), b = fp8_e4m3_round_ops(x);
        ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
        const at::Tensor ai = a.to(at::kFloat).view(at::kInt), bi = b.to(at::kFloat).view(at::kInt);
        const at::Tensor differ = ai != bi;
        const int64_t first = differ.any().item<bool>() ? differ.nonzero()[0][0].item<int64_t>() : -1;
        EXPECT_EQ(differ.sum().item<int64_t>(), 0) << what << ": first at " << first;
    };
    const at::Tensor bf16 = at::arange(65536, at::kInt).to(at::kShort).view(at::kBFloat16);
    same(bf16, "every bf16");
    same(bf16.to(at::kFloat), "every bf16 as float32");
    at::manual_seed(7);
    same(at::randint(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), {1 << 20}, at::kInt)
             .view(at::kFloat),
         "random float32 bits");
    std::vector<float> mids;
    for (int c = 0; c < 0x7E; ++c) {
        const float lo = fp8_e4m3_decode_value(static_cast<uint8_t>(c));
        const float mid = (lo + fp8_e4m3_decode_value(static_cast<uint8_t>(c + 1))) / 2;
        for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f)}) {
            mids.push_back(v);
            mids.push_back(-v);
        }
    }
    for (float v : {448.0f, 464.0f, std::nextafter(464.0f, 0.0f), 480.0f, 1e30f, -0.0f})
        mids.insert(mids.end(), {v, -v});
    same(at::tensor(mids), "grid midpoints");
    same(at::tensor(mids).to(at::kHalf), "grid midpoints as fp16");
}

// ---------------------------------------------------------------- FP4 E2M1

TEST(FP4, TiesAndCodes) {
    struct c {
        float x;
        uint8_t code;
    };
    const std::vector<c> cases = {
        {0.0f, 0},   {0.25f, 0},  {0.2501f, 1}, {0.5f, 1},  {0.7499f, 1}, {0.75f, 2},
        {1.25f, 2},  {1.2501f, 3}, {1.7499f, 3}, {1.75f, 4}, {2.5f, 4},    {2.5001f, 5},
        {3.4999f, 5}, {3.5f, 6},  {5.0f, 6},    {5.0001f, 7}, {6.0f, 7},   {100.0f, 7},
        {-0.1f, 8},  {-2.5f, 12},  {-6.0f, 15}, {-3.5f, 14},
    };
    for (const auto &k : cases) {
        EXPECT_EQ(fp4_e2m1_encode_value(k.x), k.code) << k.x;
        auto r = values(fp4_e2m1_round(f32({k.x}, {1})))[0];
        const float want = fp4_e2m1_decode_value(k.code);
        EXPECT_EQ(r, want) << k.x;
        EXPECT_EQ(std::signbit(r), std::signbit(want)) << k.x;
    }
    // -0.0: cast_to_fp4 multiplies by sign(-0.0) = 0 and gives +0 (code 0); the packer, which
    // only sees values, stores the sign bit of whatever it is given.
    auto mz = values(fp4_e2m1_round(f32({-0.0f}, {1})))[0];
    EXPECT_FALSE(std::signbit(mz));
    EXPECT_EQ(fp4_e2m1_encode_value(mz), 0);
    EXPECT_EQ(fp4_e2m1_encode_value(-0.0f), 8);
    const std::vector<float> grid = {0, .5, 1, 1.5, 2, 3, 4, 6};
    for (int code = 0; code < 16; ++code) {
        const float v = fp4_e2m1_decode_value(static_cast<uint8_t>(code));
        EXPECT_EQ(std::fabs(v), grid[code & 7]);
        EXPECT_EQ(std::signbit(v), code >= 8);
    }
    auto codes = at::arange(16, at::kInt).to(at::kByte);
    EXPECT_TRUE(at::equal(fp4_e2m1_encode(fp4_e2m1_decode(codes)), codes));
    EXPECT_TRUE(std::isnan(values(fp4_e2m1_round(f32({NAN}, {1})))[0]));
}

// ---------------------------------------------------------------- E8M0 (MX)

TEST(MX, ScaleExponent) {
    // 1.0 -> 2^0, e = 127 + 0 - 2 = 125; 1.7 keeps 2^0 (fraction .7 < .75); 1.75 rounds up to
    // 2^1 (e 126); 6 = 1.5 * 2^2 -> 2^2 (e 127); FP8: 448 = 1.75 * 2^8 -> 2^9, e = 127 + 9 - 8.
    auto absmax = f32({1.0f, 1.7f, 1.75f, 6.0f, 0.0f}, {5});
    EXPECT_EQ(values(mx_scale_exponent(absmax, 4)),
              (std::vector<float>{125, 125, 126, 127, -INFINITY}));
    EXPECT_EQ(values(mx_scale_exponent(f32({448.f}, {1}), 8)), std::vector<float>{128});
    // Same in bf16 (7 mantissa bits: 1.75 = 0x3FE0 rounds up, 1.6875 does not).
    auto b = f32({1.75f, 1.6875f}, {2}).to(at::kBFloat16);
    EXPECT_EQ(values(round_to_power_of_two(b)), (std::vector<float>{2.f, 1.f}));
    EXPECT_EQ(values(round_to_power_of_two(f32({1.75f, 1.7f, 3.0f}, {3}).to(at::kHalf))),
              (std::vector<float>{2.f, 1.f, 2.f}));
    EXPECT_EQ(values(e8m0_to_scale(f32({125, 127, 128}, {3}), at::kFloat)),
              (std::vector<float>{0.25f, 1.f, 2.f}));
    EXPECT_EQ(ints<int>(e8m0_from_scale(f32({0.25f, 1.f, 2.f}, {3}))),
              (std::vector<int>{125, 127, 128}));
    EXPECT_EQ(e8m0_from_scale(f32({1.f}, {1})).scalar_type(), at::kByte);
}

TEST(MX, MXFP4GroupQparams) {
    auto a = *preset_scheme("MXFP4A16", {"Linear"}).weights;
    // One row, one group of 32: absmax 1.0 -> e 125 -> scale 0.25; values / 0.25 on the FP4 grid.
    std::vector<float> v(32, 0.0f);
    v[0] = 1.0f;
    v[1] = -0.5f;
    v[2] = 0.3f; // 1.2 -> 1
    auto x = f32(v, {1, 32});
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(values(qp.scale), std::vector<float>{0.25f});
    EXPECT_EQ(ints<int>(e8m0_from_scale(qp.scale)), std::vector<int>{125});
    EXPECT_EQ(qp.zero_point.scalar_type(), at::kByte);
    auto q = quantize(a, x, qp);
    EXPECT_EQ(ints<int>(q.slice(1, 0, 3)), (std::vector<int>{6, 12, 2})); // 4, -2, 1
    EXPECT_EQ(values(fake_quantize(a, x, qp).slice(1, 0, 3)),
              (std::vector<float>{1.0f, -0.5f, 0.25f}));
    // An all-zero group: e clamps to 0, scale 2^-127 (nonzero in float32).
    auto z = qparams_observe(a, at::zeros({1, 32}));
    EXPECT_EQ(values(z.scale)[0], std::ldexp(1.0f, -127));
}

// ---------------------------------------------------------------- qparams and fake quant

TEST(Qparams, Int4SymmetricGroupScaleAndCodes) {
    auto a = make_args([] {
        quant_args r;
        r.num_bits = 4;
        r.group_size = 4;
        return r;
    }());
    // Group (0,0) absmax 7.5 -> scale 7.5/7.5 = 1; group (0,1) absmax 15 -> scale 2.
    // Codes: 7.5 -> 8 -> clamped 7; -7.5 -> -8; ties 2.5 -> 2, 3.5 -> 4, 1.5 -> 2, .5 -> 0.
    // Row 1 is all zero: its scales become float32 eps 2^-23.
    auto x = f32({7.5f, -7.5f, 2.5f, 3.5f, 15.f, -15.f, 5.f, 7.f, //
                  0, 0, 0, 0, 0, 0, 0, 0},
                 {2, 8});
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(qp.scale.sizes(), (std::vector<int64_t>{2, 2}));
    const float eps = std::ldexp(1.0f, -23);
    EXPECT_EQ(values(qp.scale), (std::vector<float>{1.f, 2.f, eps, eps}));
    EXPECT_EQ(qp.zero_point.scalar_type(), at::kChar);
    auto q = quantize(a, x, qp);
    EXPECT_EQ(q.scalar_type(), at::kChar);
    EXPECT_EQ(ints<int>(q), (std::vector<int>{7, -8, 2, 4, 7, -8, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0}));
    auto fq = fake_quantize(a, x, qp);
    EXPECT_EQ(values(fq.slice(0, 0, 1)),
              (std::vector<float>{7.f, -8.f, 2.f, 4.f, 14.f, -16.f, 4.f, 8.f}));
    EXPECT_TRUE(at::equal(dequantize(a, q, qp), fq));

    // Half-to-even everywhere: 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, -1.5 -> -2.
    auto h = f32({0.5f, 1.5f, -0.5f, 7.5f}, {1, 4});
    EXPECT_EQ(ints<int>(quantize(a, h, qparams_observe(a, h))), (std::vector<int>{0, 2, 0, 7}));
}

TEST(Qparams, Int8SymmetricDividesBy127_5) {
    auto a = make_args({});
    // absmax 127.5 -> scale 1: 127.5 -> 128 clamps to 127, -127.5 -> -128, 2.5 -> 2, -2.5 -> -2.
    auto x = f32({127.5f, -127.5f, 2.5f, -2.5f, 0.5f, -1.5f}, {6});
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(values(qp.scale), std::vector<float>{1.f});
    EXPECT_EQ(ints<int>(quantize(a, x, qp)), (std::vector<int>{127, -128, 2, -2, 0, -2}));
}

TEST(Qparams, Int8AsymmetricZeroPoint) {
    auto a = args_of(R"({"num_bits": 8, "symmetric": false, "strategy": "channel"})");
    // Row [-1, 3]: scale 4/255; zp = -128 - (-1)/(4/255) = -64.25 -> -64 (int8).
    // Row [2, 5]: zero included: min 0, scale 5/255, zp -128.
    auto x = f32({-1.f, 3.f, 0.5f, 2.f, 5.f, 3.f}, {2, 3});
    auto qp = qparams_from_minmax(a, f32({-1.f, 2.f}, {2, 1}), f32({3.f, 5.f}, {2, 1}));
    EXPECT_EQ(qp.zero_point.scalar_type(), at::kChar);
    EXPECT_EQ(ints<int>(qp.zero_point), (std::vector<int>{-64, -128}));
    EXPECT_FLOAT_EQ(values(qp.scale)[0], 4.f / 255.f);
    EXPECT_FLOAT_EQ(values(qp.scale)[1], 5.f / 255.f);
    // -1 -> -63.75 - 64 = -127.75 -> -128; 3 -> 191.25 - 64 -> 127; 0.5 -> 31.875 - 64 -> -32.
    // 2 -> 102 - 128 = -26; 5 -> 255 - 128 = 127; 3 -> 153 - 128 = 25.
    auto q = quantize(a, x, qp);
    EXPECT_EQ(ints<int>(q), (std::vector<int>{-128, 127, -32, -26, 127, 25}));
    auto back = dequantize(a, q, qp);
    EXPECT_NEAR(values(back)[1], 3.0f, 4.f / 255.f);
    EXPECT_TRUE(at::equal(back, fake_quantize(a, x, qp)));
    EXPECT_EQ(args_to_json(a)["zp_dtype"], "torch.int8");
}

TEST(Qparams, ZeroScaleBecomesEps) {
    auto a = make_args({});
    auto z = at::zeros({4});
    EXPECT_EQ(values(qparams_observe(a, z).scale)[0], std::ldexp(1.0f, -23));
    auto zb = qparams_observe(a, z.to(at::kBFloat16));
    EXPECT_EQ(zb.scale.scalar_type(), at::kBFloat16);
    EXPECT_EQ(values(zb.scale)[0], 0.0078125f); // bf16 eps 2^-7
    EXPECT_EQ(values(qparams_observe(a, z.to(at::kHalf)).scale)[0], std::ldexp(1.0f, -10));
    auto fp8scale = args_of(R"({"scale_dtype": "torch.float8_e4m3fn"})");
    EXPECT_EQ(values(qparams_observe(fp8scale, z).scale)[0], 0.125f);
    // Integer scale dtypes use 1.
    auto u8 = args_of(R"({"scale_dtype": "torch.uint8"})");
    EXPECT_EQ(values(qparams_observe(u8, z).scale)[0], 1.0f);
}

TEST(Qparams, Bf16ScaleRounding) {
    auto a = make_args([] {
        quant_args r;
        r.num_bits = 4;
        r.strategy = quant_strategy::channel;
        return r;
    }());
    // bf16 absmax 1.0: 1/7.5 = 0.13333 -> bf16 1.0703125 * 2^-3 = 0.1337890625 (fp32 0.13333334).
    auto x = f32({1.0f, -0.3f, 0.2f, 0.05f}, {1, 4}).to(at::kBFloat16);
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(qp.scale.scalar_type(), at::kBFloat16);
    EXPECT_EQ(values(qp.scale)[0], 0.1337890625f);
    EXPECT_NE(values(qparams_observe(a, x.to(at::kFloat)).scale)[0], 0.1337890625f);
    // scale_dtype rounds further: bfloat16 -> float16 -> back.
    auto h = args_of(R"({"num_bits": 4, "strategy": "channel", "scale_dtype": "float16"})");
    EXPECT_EQ(values(qparams_observe(h, x.to(at::kFloat)).scale)[0],
              static_cast<float>(c10::Half(1.0f / 7.5f)));
}

TEST(Qparams, Bf16ArithmeticRoundsEveryOp) {
    at::manual_seed(48);
    auto a = make_args([] {
        quant_args r;
        r.num_bits = 4;
        r.group_size = 16;
        return r;
    }());
    auto x = (at::randn({64, 128}, at::kFloat) * 0.05).to(at::kBFloat16);
    auto qp = qparams_observe(a, x);
    auto fq = fake_quantize(a, x, qp);
    EXPECT_EQ(fq.scalar_type(), at::kBFloat16);
    // By hand: bf16(x / s) -> round -> clamp -> bf16(q * s), each op rounded to bf16.
    auto xg = x.reshape({64, 8, 16}).to(at::kFloat);
    auto s = qp.scale.unsqueeze(-1).to(at::kFloat);
    auto scaled = (xg / s).to(at::kBFloat16).to(at::kFloat);
    auto q = at::clamp(at::round(scaled), -8, 7);
    auto want = (q * s).to(at::kBFloat16).reshape({64, 128});
    EXPECT_TRUE(at::equal(fq, want));
    // Doing the division in float32 instead changes some codes: the rounding matters.
    auto q32 = at::clamp(at::round(xg / s), -8, 7);
    EXPECT_FALSE(at::equal(q, q32));
}

TEST(Qparams, FP8TensorAndChannel) {
    auto fp8 = preset_scheme("FP8", {"Linear"});
    // Per tensor: absmax 448 -> scale 1; values round onto the E4M3 grid.
    auto x = f32({448.f, 300.f, 17.f, -1e-5f, -448.f, 0.5f}, {2, 3});
    auto qp = qparams_observe(*fp8.weights, x);
    EXPECT_EQ(values(qp.scale), std::vector<float>{1.f});
    EXPECT_EQ(values(fake_quantize(*fp8.weights, x, qp)),
              (std::vector<float>{448.f, 288.f, 16.f, -0.f, -448.f, 0.5f}));
    auto codes = quantize(*fp8.weights, x, qp);
    EXPECT_EQ(codes.scalar_type(), at::kByte);
    EXPECT_EQ(ints<int>(codes), (std::vector<int>{0x7E, 0x79, 0x58, 0x80, 0xFE, 0x30}));
    // Per channel: scale [out, 1] = row absmax / 448.
    auto ch = *preset_scheme("FP8_DYNAMIC", {"Linear"}).weights;
    auto y = f32({896.f, 1.f, -4.48f, 0.f}, {2, 2});
    auto cq = qparams_observe(ch, y);
    EXPECT_EQ(cq.scale.sizes(), (std::vector<int64_t>{2, 1}));
    EXPECT_EQ(values(cq.scale)[0], 2.f);
    EXPECT_FLOAT_EQ(values(cq.scale)[1], 0.01f);
    EXPECT_TRUE(at::equal(dequantize(ch, quantize(ch, y, cq), cq), fake_quantize(ch, y, cq)));
}

TEST(Qparams, NVFP4GlobalAndLocalScales) {
    auto a = *preset_scheme("NVFP4A16", {"Linear"}).weights;
    // absmax 6 -> global 448*6/6 = 448; local = fp8(448 * 6/6) = 448; effective scale 1.
    auto x = f32({6.f, -6.f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.f, 5.5f, -0.1f, 0.f, 0.3f,
                  1.3f, 2.6f, 4.f},
                 {1, 16});
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(qp.global_scale.scalar_type(), at::kFloat);
    EXPECT_EQ(values(qp.global_scale), std::vector<float>{448.f});
    EXPECT_EQ(values(qp.scale), std::vector<float>{448.f});
    auto q = quantize(a, x, qp);
    EXPECT_EQ(ints<int>(q),
              (std::vector<int>{7, 15, 0, 2, 2, 4, 4, 6, 6, 7, 8, 0, 1, 3, 5, 6}));
    EXPECT_TRUE(at::equal(dequantize(a, q, qp, nullptr, at::kFloat), fake_quantize(a, x, qp)));
    // A group with a smaller range gets a smaller fp8 local scale: absmax 3 -> 448*3/6 = 224.
    auto y = at::cat({x, x * 0.5}, 1);
    EXPECT_EQ(values(qparams_observe(a, y).scale), (std::vector<float>{448.f, 224.f}));
    // A shared (fused) global scale is used as given.
    auto shared = global_scale_for(f32({12.f}, {1}));
    EXPECT_EQ(values(shared), std::vector<float>{224.f});
    auto qs = qparams_observe(a, x, observed_role::weight, &shared);
    EXPECT_EQ(values(qs.scale), std::vector<float>{224.f});
    EXPECT_TRUE(at::equal(qs.global_scale, shared));
    // Non-finite results fall back to 1; zero absmax clamps to float32 tiny first.
    EXPECT_EQ(values(global_scale_for(f32({INFINITY}, {1}))), std::vector<float>{0.f});
    EXPECT_EQ(values(global_scale_for(f32({NAN}, {1}))), std::vector<float>{1.f});
    EXPECT_EQ(values(global_scale_for(f32({0.f}, {1}))), std::vector<float>{1.f});
    // In bf16 the reciprocal and the product each round: 1/3 -> 0.333984375, * 2688 =
    // 897.75 -> 896 (the bf16 step there is 4).
    EXPECT_EQ(values(global_scale_for(f32({3.f}, {1}).to(at::kBFloat16))),
              std::vector<float>{896.f});
}

TEST(Qparams, BlockStrategyPadsAndCrops) {
    auto a = args_of(R"({"type": "float", "strategy": "block", "block_structure": [2, 2]})");
    // 3x5 weight -> blocks over a 4x6 zero-padded copy: scale [2, 3].
    auto x = at::arange(15, at::kFloat).reshape({3, 5}) - 7;
    auto qp = qparams_observe(a, x);
    EXPECT_EQ(qp.scale.sizes(), (std::vector<int64_t>{2, 3}));
    // Block (0,0) = [[-7,-6],[-2,-1]] absmax 7; (1,0) = [[3,4],[pad]] 4; (1,2) = [[7],[pad]] 7.
    EXPECT_FLOAT_EQ(values(qp.scale)[0], 7.f / 448.f);
    EXPECT_FLOAT_EQ(values(qp.scale)[3], 4.f / 448.f);
    EXPECT_FLOAT_EQ(values(qp.scale)[5], 7.f / 448.f);
    auto fq = fake_quantize(a, x, qp);
    EXPECT_EQ(fq.sizes(), x.sizes());
    EXPECT_TRUE(at::allclose(fq, x, 0.07, 0));
    EXPECT_TRUE(at::equal(dequantize(a, quantize(a, x, qp), qp), fq));
}

TEST(Qparams, GIdxGathersColumnsBeforeGrouping) {
    auto a = make_args([] {
        quant_args r;
        r.num_bits = 4;
        r.group_size = 2;
        r.actorder = actorder_kind::group;
        return r;
    }());
    // g_idx puts columns {0, 3} in group 0 and {1, 2} in group 1.
    auto x = f32({7.5f, 0.1f, 0.2f, 1.0f}, {1, 4});
    auto g = at::tensor(std::vector<int>{0, 1, 1, 0}, at::kInt);
    auto qp = qparams_observe(a, x, observed_role::weight, nullptr, &g);
    EXPECT_FLOAT_EQ(values(qp.scale)[0], 1.0f);          // max(7.5, 1.0) / 7.5
    EXPECT_FLOAT_EQ(values(qp.scale)[1], 0.2f / 7.5f);   // max(0.1, 0.2) / 7.5
    auto q = quantize(a, x, qp, &g);
    EXPECT_EQ(ints<int>(q), (std::vector<int>{7, 4, 7, 1})); // 0.1/0.02667 = 3.75 -> 4
    EXPECT_TRUE(at::equal(dequantize(a, q, qp, &g), fake_quantize(a, x, qp, &g)));
    // g_idx with -1 (not initialized) means column order.
    auto unset = at::full({4}, -1, at::kInt);
    EXPECT_TRUE(at::equal(fake_quantize(a, x, qp, &unset), fake_quantize(a, x, qp)));
    EXPECT_NE(error_of([&] { qparams_observe(a, f32({1, 2, 3}, {1, 3})); }).find("group_size"),
              std::string::npos);
}

TEST(Qparams, DynamicTokenAndGroup) {
    at::manual_seed(69);
    auto tok = *preset_scheme("W8A8", {"Linear"}).input_activations;
    auto x = at::randn({2, 3, 8});
    auto qp = qparams_dynamic(tok, x);
    EXPECT_EQ(qp.scale.sizes(), (std::vector<int64_t>{2, 3, 1}));
    auto row_absmax = std::get<0>(x.abs().max(-1, true));
    EXPECT_TRUE(at::allclose(qp.scale, row_absmax / 127.5));
    EXPECT_EQ(fake_quantize_dynamic(tok, x).sizes(), x.sizes());
    auto grp = *preset_scheme("FP8_BLOCK", {"Linear"}).input_activations;
    auto y = at::randn({2, 3, 256});
    EXPECT_EQ(qparams_dynamic(grp, y).scale.sizes(), (std::vector<int64_t>{2, 3, 2}));
    auto ten = args_of(R"({"dynamic": true})");
    EXPECT_EQ(qparams_dynamic(ten, y).scale.sizes(), (std::vector<int64_t>{1}));
}

TEST(Qparams, Fp16AndLocalAndDynamicArgs) {
    at::manual_seed(5);
    // fp16 weights (LibTorch 1.13 lacks some fp16 CPU kernels; results must still be exact).
    auto w = (at::randn({8, 128}) * 0.05).to(at::kHalf);
    for (const char *name : {"W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "NVFP4A16", "MXFP4A16"}) {
        auto a = *preset_scheme(name, {"Linear"}).weights;
        auto qp = qparams_observe(a, w);
        EXPECT_EQ(qp.scale.scalar_type(), at::kHalf) << name;
        auto fq = fake_quantize(a, w, qp);
        EXPECT_TRUE(at::equal(dequantize(a, quantize(a, w, qp), qp, nullptr, fq.scalar_type()), fq))
            << name;
        EXPECT_LT((fq.to(at::kFloat) - w.to(at::kFloat)).abs().max().item<float>(), 0.05f) << name;
    }
    // NVFP4 activations ("local"): a calibrated global scale, local scales per 16 at runtime.
    auto in = *preset_scheme("NVFP4", {"Linear"}).input_activations;
    auto x = at::randn({2, 3, 32});
    auto qp = qparams_observe(in, x, observed_role::activation);
    EXPECT_TRUE(at::equal(qp.global_scale, global_scale_for(x.abs().max())));
    EXPECT_EQ(qp.scale.sizes(), (std::vector<int64_t>{2, 3, 2}));
    observer running(in, observed_role::activation);
    running.observe(x);
    running.observe(x * 2);
    EXPECT_TRUE(at::equal(running.global_scale(), global_scale_for(x.abs().max() * 2)));
    // Fully dynamic args observe as the runtime does.
    auto tok = *preset_scheme("FP8_DYNAMIC", {"Linear"}).input_activations;
    EXPECT_TRUE(at::equal(qparams_observe(tok, x, observed_role::activation).scale,
                          qparams_dynamic(tok, x).scale));
}

// ---------------------------------------------------------------- observers

TEST(Observers, StaticMinmaxAndMovingAverage) {
    auto stat = *preset_scheme("FP8", {"Linear"}).input_activations; // static_minmax
    observer s(stat, observed_role::activation);
    EXPECT_EQ(s.kind(), "static_minmax");
    EXPECT_EQ(s.reduce_op(), observer::reduction::min_max);
    s.observe(f32({1.f, -2.f}, {1, 1, 2}));
    s.observe(f32({4.f, -1.f}, {1, 1, 2}));
    EXPECT_EQ(values(s.min_vals()), std::vector<float>{-2.f});
    EXPECT_EQ(values(s.max_vals()), std::vector<float>{4.f});
    EXPECT_EQ(values(s.get_qparams().scale), std::vector<float>{4.f / 448.f});

    auto ema_args = args_of(R"({"observer": "minmax"})");
    observer m(ema_args, observed_role::activation);
    EXPECT_EQ(m.reduce_op(), observer::reduction::mean);
    m.observe(f32({-1.f, 1.f}, {1, 2}));
    m.observe(f32({-3.f, 101.f}, {1, 2}));
    // 1 * 0.99 + 101 * 0.01 = 2.0; -1 * 0.99 - 3 * 0.01 = -1.02.
    EXPECT_FLOAT_EQ(values(m.max_vals())[0], 2.0f);
    EXPECT_FLOAT_EQ(values(m.min_vals())[0], -1.02f);

    // Weights always run memoryless.
    EXPECT_EQ(observer(stat, observed_role::weight).kind(), "memoryless_minmax");
    EXPECT_EQ(observer(args_of(R"({"observer": "mse"})")).kind(), "memoryless_mse");
    observer w(stat, observed_role::weight);
    w.observe(f32({1.f, -2.f}, {1, 2}));
    w.observe(f32({0.5f, -0.25f}, {1, 2}));
    EXPECT_EQ(values(w.max_vals()), std::vector<float>{0.5f});
    EXPECT_NE(error_of([] { observer(args_of(R"({"observer": "no_such_observer"})")); })
                  .find("no_such_observer"),
              std::string::npos);
}

// imatrix_mse (llm-compressor's IMatrixMSEObserver): the grid p = 1 - i/20 for i = 0..19 inclusive
// (max(1, int(0.95 * 20)) + 1 candidates), error sum imp * |q - x|^3 in float32 with the
// importance E[x^2] per input channel normalized to mean 1. The oracle below searches the same
// candidates independently (patience 0: no early stop) and must pick the same range per row.
TEST(Observers, IMatrixWeighsColumnsByInputEnergy) {
    at::manual_seed(31);
    const auto a = args_of(R"({"num_bits": 4, "strategy": "group", "group_size": 8, "observer": "imatrix_mse",
                               "observer_kwargs": {"patience": 0}})");
    auto w = at::randn({6, 16});
    w.select(1, 3).fill_(8.0); // an outlier column the importance may or may not care about
    observer o(a, observed_role::weight);
    EXPECT_EQ(o.kind(), "imatrix_mse");
    // Inputs: column 3 silent, the rest loud: its clipping error should count for nothing.
    auto x = at::randn({5, 7, 16});
    x.select(2, 3).zero_();
    o.observe_input(x);
    o.observe_input(x * 2);
    const auto imp = o.importance(16);
    ASSERT_TRUE(imp.defined());
    const auto expect_imp = (x.pow(2).sum(at::IntArrayRef{0, 1}) * 5) / 70.0;
    EXPECT_TRUE(at::allclose(imp, expect_imp / expect_imp.mean(), 1e-5, 1e-6));
    o.observe(w);

    const auto flat = flatten_for_calibration(a, w, observed_role::weight);
    const auto imp_flat = flatten_for_calibration(a, imp.unsqueeze(0).expand({6, 16}), observed_role::weight);
    quant_args token = a;
    token.strategy = quant_strategy::token;
    const auto mn0 = at::amin(flat, {0, -1}), mx0 = at::amax(flat, {0, -1});
    at::Tensor best = at::full_like(mn0, 3e38), best_p = at::ones_like(mn0);
    for (int i = 0; i <= 19; ++i) {
        const double p = 1.0 - i / 20.0;
        const auto qp = qparams_from_minmax(a, mn0 * p, mx0 * p, nullptr);
        const auto q = fake_quantize(token, flat, qparams{qp.scale.unsqueeze(-1), qp.zero_point.unsqueeze(-1), {}});
        const auto err = ((q - flat).abs().pow(3) * imp_flat).sum(at::IntArrayRef{0, -1});
        best_p = at::where(err < best, at::full_like(best_p, p), best_p);
        best = at::minimum(err, best);
    }
    EXPECT_TRUE(at::allclose(o.max_vals(), mx0 * best_p, 1e-6, 1e-7)) << o.max_vals() << mx0 * best_p;
    // The silent outlier is clipped in its groups: some group shrinks below its full range.
    EXPECT_TRUE((best_p < 1.0).any().item<bool>());
    // Uniform MSE (no inputs seen) keeps more of the outlier's range than the importance-weighted
    // search does in the outlier's groups.
    observer u(a, observed_role::weight);
    u.observe(w);
    EXPECT_TRUE((u.max_vals().select(1, 0) >= o.max_vals().select(1, 0) - 1e-6).all().item<bool>());
}

TEST(Observers, IMatrixFallsBackOrFailsWhenStrict) {
    const auto w = at::randn({4, 8});
    // No inputs: uniform MSE with the imatrix grid (a warning, not an error).
    observer o(args_of(R"({"num_bits": 4, "strategy": "channel", "observer": "imatrix_mse"})"));
    std::string why;
    EXPECT_FALSE(o.importance(8, &why).defined());
    EXPECT_NE(why.find("no calibration inputs"), std::string::npos) << why;
    o.observe(w);
    EXPECT_TRUE(o.has_stats());
    // Tensor strategy is not supported; strict turns fallbacks into errors.
    observer t(args_of(R"({"num_bits": 4, "strategy": "tensor", "observer": "imatrix_mse"})"));
    t.observe_input(at::randn({3, 8}));
    EXPECT_FALSE(t.importance(8, &why).defined());
    EXPECT_NE(why.find("TENSOR"), std::string::npos) << why;
    observer s(args_of(R"({"num_bits": 4, "strategy": "channel", "observer": "imatrix_mse",
                          "observer_kwargs": {"strict": true}})"));
    s.observe_input(at::zeros({3, 8}));
    EXPECT_NE(error_of([&] { s.observe(w); }).find("all zeros"), std::string::npos);
    observer m(args_of(R"({"num_bits": 4, "strategy": "channel", "observer": "imatrix_mse",
                          "observer_kwargs": {"strict": true}})"));
    m.observe_input(at::ones({3, 6}));
    EXPECT_NE(error_of([&] { m.observe(w); }).find("size mismatch"), std::string::npos);
    // Bad kwargs are rejected as the reference does.
    EXPECT_NE(error_of([] {
                  observer(args_of(R"({"num_bits": 4, "strategy": "channel", "observer": "imatrix_mse",
                                      "observer_kwargs": {"maxshrink": 1.5}})"));
              }).find("maxshrink"),
              std::string::npos);
}

TEST(Observers, MSEShrinksAnOutlierRange) {
    at::manual_seed(22);
    auto a = args_of(R"({"num_bits": 4, "strategy": "channel", "observer": "memoryless_mse"})");
    // Rows of +-0.9 with one 1.0: the full range (scale 1/7.5) puts 0.9 at 6.75 -> 7, an error
    // of 0.033 on 63 values; shrinking to p = 0.96 (scale 0.128) lands them at 7.03 -> 7
    // (error 0.004) for a clipping error of 0.104 on the outlier, a smaller sum |e|^2.4.
    auto x = at::full({4, 64}, 0.9) * (at::arange(64).remainder(2) * 2 - 1);
    x.select(1, 0).fill_(1.0);
    auto flat = flatten_for_calibration(a, x, observed_role::weight);
    auto [mn, mx] = mse_min_max(a, flat, mse_options{});
    EXPECT_TRUE((mx < 1.0).all().item<bool>());
    EXPECT_TRUE((mx >= 0.81 - 1e-6).all().item<bool>()); // p = 1 - i/100, i < 20
    EXPECT_TRUE(at::allclose(mn, mx * -0.9)); // one shrink factor scales both ends

    // On random rows the chosen range never does worse than the plain min/max (p = 1 is tried).
    auto y = at::randn({8, 64}) * 0.1;
    y.select(1, 0).fill_(1.0);
    auto err = [&](const at::Tensor &v, const qparams &qp) {
        return (fake_quantize(a, v, qp) - v).abs().pow(2.4).sum(1);
    };
    auto minmax = args_of(R"({"num_bits": 4, "strategy": "channel"})");
    EXPECT_TRUE((err(x, qparams_observe(a, x)) < err(x, qparams_observe(minmax, x))).all().item<bool>());
    EXPECT_TRUE((err(y, qparams_observe(a, y)) <= err(y, qparams_observe(minmax, y))).all().item<bool>());
}

// ---------------------------------------------------------------- packing

TEST(Packing, Known4BitRow) {
    // q = -8..7 -> u = 0..15; element 0 in bits 0-3: words 0x76543210 and 0xFEDCBA98.
    auto q = at::arange(-8, 8, at::kInt).to(at::kChar).reshape({1, 16});
    auto p = pack_int32(q, 4);
    EXPECT_EQ(p.scalar_type(), at::kInt);
    EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(ints<uint32_t>(p), (std::vector<uint32_t>{0x76543210u, 0xFEDCBA98u}));
    EXPECT_TRUE(at::equal(unpack_int32(p, 4, {1, 16}), q));
}

TEST(Packing, Known3BitRowCrossesAWord) {
    // u = [0,1,2,3,4,5,6,7,0,1,7]: element 10 sits at bits 30..32, its top bit in word 1.
    // word 0 = sum u_i << 3i (i < 10) | (7 & 3) << 30 = 0xC8FAC688; word 1 = 7 >> 2 = 1.
    auto q = at::tensor(std::vector<int>{-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, 3}, at::kInt)
                 .to(at::kChar)
                 .reshape({1, 11});
    auto p = pack_int32(q, 3);
    EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(ints<uint32_t>(p), (std::vector<uint32_t>{0xC8FAC688u, 0x00000001u}));
    EXPECT_TRUE(at::equal(unpack_int32(p, 3, {1, 11}), q));
}

TEST(Packing, RoundTripsAndZeroPoints) {
    at::manual_seed(66);
    for (int b : {2, 3, 4, 5, 8}) {
        const int lo = -(1 << (b - 1)), hi = (1 << (b - 1)) - 1;
        for (int64_t cols : {1, 7, 32, 33, 100, 128}) {
            auto q = at::randint(lo, hi + 1, {5, cols}, at::kChar);
            auto p = pack_int32(q, b);
            EXPECT_EQ(p.size(1), packed_words(cols, b));
            EXPECT_EQ(p.size(1), (cols * b + 31) / 32);
            EXPECT_TRUE(at::equal(unpack_int32(p, b, {5, cols}), q)) << b << " bits " << cols;
        }
        // Zero points pack along dim 0: [ceil(out*b/32), groups].
        auto zp = at::randint(lo, hi + 1, {40, 3}, at::kChar);
        auto pz = pack_int32(zp, b, 0);
        EXPECT_EQ(pz.sizes(), (std::vector<int64_t>{packed_words(40, b), 3}));
        EXPECT_TRUE(at::equal(pz, pack_int32(zp.t().contiguous(), b).t()));
        EXPECT_TRUE(at::equal(unpack_int32(pz, b, {40, 3}, 0), zp));
    }
    // 8 bits: one byte per value, value 0 in the low byte; 127 -> 255 sets the sign bit.
    auto p8 = pack_int32(at::tensor(std::vector<int>{-128, -127, 0, 127}, at::kInt)
                             .to(at::kChar)
                             .reshape({1, 4}),
                         8);
    EXPECT_EQ(ints<uint32_t>(p8), std::vector<uint32_t>{0xFF800100u});
    // 3-D (MoE experts) pack per slice.
    auto e = at::randint(-8, 8, {2, 3, 16}, at::kChar);
    EXPECT_EQ(pack_int32(e, 4).sizes(), (std::vector<int64_t>{2, 3, 2}));
    EXPECT_TRUE(at::equal(unpack_int32(pack_int32(e, 4), 4, {2, 3, 16}), e));
    EXPECT_NE(error_of([] { pack_int32(at::full({1, 2}, 8, at::kChar), 4); }).find("4 signed bits"),
              std::string::npos);
}

// Tensors up to 2^20 values pack in plain loops, larger ones through ATen's parallel loop: the
// same words either way (a large tensor against its small slices packed one by one), along
// either dimension, and the same error for a value out of range.
TEST(Packing, LargeAndSmallPathsAgree) {
    at::manual_seed(67);
    for (int b : {3, 4, 8}) {
        const int lo = -(1 << (b - 1)), hi = (1 << (b - 1)) - 1;
        const auto q = at::randint(lo, hi + 1, {1100, 1000}, at::kInt);
        ASSERT_GT(q.numel(), int64_t{1} << 20);
        std::vector<at::Tensor> rows, cols;
        for (int64_t r = 0; r < 1100; r += 100) rows.push_back(pack_int32(q.slice(0, r, r + 100), b));
        EXPECT_TRUE(at::equal(pack_int32(q, b), at::cat(rows, 0))) << b;
        for (int64_t c = 0; c < 1000; c += 100) cols.push_back(pack_int32(q.slice(1, c, c + 100), b, 0));
        EXPECT_TRUE(at::equal(pack_int32(q, b, 0), at::cat(cols, 1))) << b;
    }
    auto big = at::zeros({1100, 1000}, at::kChar);
    big[5][7] = 9;
    auto small = at::zeros({3, 4}, at::kChar);
    small[1][2] = 9;
    EXPECT_EQ(error_of([&] { pack_int32(big, 4); }), error_of([&] { pack_int32(small, 4); }));
    EXPECT_NE(error_of([&] { pack_int32(small, 4); }).find("values in [0, 9]"), std::string::npos);
}

TEST(Packing, FP4Nibbles) {
    at::manual_seed(1);
    // Column 2k in the low nibble, 2k+1 in the high nibble.
    auto codes = at::tensor(std::vector<int>{1, 2, 15, 8, 7, 0}, at::kInt).to(at::kByte).reshape({1, 6});
    auto p = pack_fp4(codes);
    EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1, 3}));
    EXPECT_EQ(ints<int>(p), (std::vector<int>{0x21, 0x8F, 0x07}));
    EXPECT_TRUE(at::equal(unpack_fp4(p), codes));
    EXPECT_FALSE(error_of([] { pack_fp4(at::zeros({1, 3}, at::kByte)); }).empty());
    // Through the NVFP4 numerics end to end.
    auto a = *preset_scheme("NVFP4A16", {"Linear"}).weights;
    auto x = at::randn({4, 32});
    auto qp = qparams_observe(a, x);
    auto packed = pack_fp4(quantize(a, x, qp));
    EXPECT_EQ(packed.sizes(), (std::vector<int64_t>{4, 16}));
    EXPECT_TRUE(at::equal(dequantize(a, unpack_fp4(packed), qp, nullptr, at::kFloat),
                          fake_quantize(a, x, qp)));
}
