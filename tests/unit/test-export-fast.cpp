// The exporter's fused quantize-and-pack path must write exactly the bytes of the generic path
// (quant::quantize, then quant::pack_int32): weights in every float dtype, strategies tensor,
// channel and group, symmetric and asymmetric, 2 to 8 bits, scales in the weight's dtype or
// another, values on rounding boundaries; and the rounding error the fused pass measures on the
// way equals fake_quantize's. The same for FP8 weights, whose fused pass writes E4M3 codes.
#include "export/formats.h"
#include "export/module_compress.h"
#include "quant/args.h"
#include "quant/float_formats.h"
#include "quant/pack_avx512.h"
#include "quant/packing.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "quant/qparams_fast.h"
#include "quant/quantize_pack.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

using namespace llmc;

namespace {

uint64_t fast_taken = 0;

std::vector<saved_tensor> compress(const quant::quant_scheme &scheme, const std::vector<saved_tensor> &in,
                                   at::ScalarType dtype, bool fast, double *error = nullptr,
                                   const std::string &format = exporter::fmt_name::pack_quantized) {
    exporter::set_fast_paths(fast);
    const uint64_t before = exporter::fast_paths_used();
    auto out = exporter::compress_module("m", scheme, format, in, dtype, nullptr, error);
    fast_taken += exporter::fast_paths_used() - before;
    exporter::set_fast_paths(true);
    return out;
}

void expect_same(const std::vector<saved_tensor> &a, const std::vector<saved_tensor> &b, const std::string &what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].name, b[i].name) << what;
        EXPECT_EQ(a[i].dtype, b[i].dtype) << what;
        ASSERT_EQ(a[i].tensor.scalar_type(), b[i].tensor.scalar_type()) << what << " " << a[i].name;
        EXPECT_TRUE(at::equal(a[i].tensor, b[i].tensor)) << what << " " << a[i].name;
    }
}

// Weights with a spread of magnitudes per row, exact zeros and values that land on .5 after
// division by their scale (ties of the rounding).
at::Tensor weight(int64_t rows, int64_t cols, at::ScalarType dtype, uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    at::Tensor w = at::empty({rows, cols}, at::kFloat).normal_(0.0, 0.02, gen);
    w *= at::empty({rows, 1}, at::kFloat).uniform_(0.1, 10.0, gen);
    w.index_put_({0}, 0.0);                                  // an all-zero row: scale eps
    w.index_put_({1 % rows, at::indexing::Slice(0, cols / 2)}, 0.0);
    return w.to(dtype);
}

// INT4 (default symmetric) weights in groups of `group`.
quant::quant_args int4_group(int group) {
    quant::quant_args a;
    a.num_bits = 4;
    a.strategy = quant::quant_strategy::group;
    a.group_size = group;
    return quant::make_args(a);
}

// Whether this CPU runs the AVX-512 INT loop (its tests skip where it never runs).
bool avx512_int_loop_runs() {
    quant::int_pack_rows probe;
    probe.cols = probe.group = 16;
    probe.words = reinterpret_cast<uint32_t *>(&probe);
    return quant::int_pack_avx512_serves(probe);
}

// The formats the INT test writes: pack-quantized at every width; 8- and 2-bit weights rotate
// through the int- and naive-quantized formats too, which store int8 values.
const std::string int_formats[] = {exporter::fmt_name::pack_quantized, exporter::fmt_name::int_quantized,
                                   exporter::fmt_name::naive_quantized};

} // namespace

TEST(export_fast, pack_quantized_matches_the_generic_path) {
    int cases = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat, at::kHalf}) {
        for (const char *strategy : {"group", "channel", "tensor"}) {
            for (bool symmetric : {true, false}) {
                // Every width, the packing of each its own; 8-bit and 2-bit weights also as int8.
                for (int bits : {4, 8, 2, 3, 1, 5, 6, 7}) {
                    for (int64_t group : {int64_t(128), int64_t(32)}) {
                        if (std::string(strategy) != "group" && group != 128) continue;
                        if (bits != 4 && bits != 8 && bits != 3 && (dtype == at::kHalf || group != 128)) continue;
                        quant::quant_args a;
                        a.num_bits = bits;
                        a.symmetric = symmetric;
                        a.strategy = std::string(strategy) == "group"     ? quant::quant_strategy::group
                                     : std::string(strategy) == "channel" ? quant::quant_strategy::channel
                                                                          : quant::quant_strategy::tensor;
                        if (std::string(strategy) == "group") a.group_size = static_cast<int>(group);
                        a = quant::make_args(a);
                        quant::quant_scheme scheme;
                        scheme.targets = {"Linear"};
                        scheme.weights = a;
                        // Rows whose codes end mid-word (200 columns) where no group forbids it.
                        const int64_t rows = 37, cols = std::string(strategy) == "group" ? 256 : 200;
                        const std::string &format = int_formats[bits == 8 || bits == 2 ? cases % 3 : 0];
                        const at::Tensor w = weight(rows, cols, dtype, 1000 + cases);
                        quant::qparams qp = quant::qparams_observe(a, w);
                        // The plugins store scales in the weight's dtype; other dtypes are promoted.
                        for (at::ScalarType sdt : {dtype, at::kFloat}) {
                            std::vector<saved_tensor> in{{"weight", w, ""}, {"weight_scale", qp.scale.to(sdt), ""}};
                            if (!symmetric) in.push_back({"weight_zero_point", qp.zero_point, ""});
                            const std::string what = std::string(c10::toString(dtype)) + " " + strategy + " " +
                                                     (symmetric ? "sym" : "asym") + " b" + std::to_string(bits) +
                                                     " g" + std::to_string(group) + " scale " + c10::toString(sdt) +
                                                     " " + format;
                            // The fused pass's rounding error is fake_quantize's (the generic path
                            // measures it with fake_quantize), up to the order of the float sums.
                            double e_fast = -1, e_generic = -2;
                            expect_same(compress(scheme, in, dtype, true, &e_fast, format),
                                        compress(scheme, in, dtype, false, &e_generic, format), what);
                            EXPECT_GT(e_generic, 0.0) << what;
                            EXPECT_NEAR(e_fast, e_generic, 1e-5 * e_generic) << what;
                            // Scaled so many quotients are exact ties: x = (k + 0.5) * s.
                            at::Tensor s = qp.scale.to(sdt).to(at::kFloat);
                            if (s.dim() == 2 && std::string(strategy) == "group")
                                s = s.repeat_interleave(group, 1);
                            at::Tensor ties = ((at::arange(cols, at::kFloat) % 15) - 7.5).expand({rows, cols}) * s;
                            in[0].tensor = ties.to(dtype);
                            expect_same(compress(scheme, in, dtype, true, &e_fast, format),
                                        compress(scheme, in, dtype, false, &e_generic, format), what + " ties");
                            EXPECT_NEAR(e_fast, e_generic, 1e-5 * e_generic + 1e-30) << what << " ties";
                            ++cases;
                        }
                    }
                }
            }
        }
    }
    EXPECT_GT(cases, 100);
    EXPECT_EQ(fast_taken, static_cast<uint64_t>(2 * cases)) << "the fused path did not run for every case";
}

// The AVX-512 loop (quant/pack_avx512.h) writes exactly the portable loop's words and int8
// values and measures exactly its error (the same float lanes summed in the same order), for
// bf16 and float weights, group, channel and tensor strategies, 4- and 8-bit packing and int8
// values; for random values, quotients on rounding ties, values past the clamp, -0 and tiny ones.
TEST(export_fast, avx512_int_loop_matches_the_portable_loop) {
    if (!avx512_int_loop_runs()) GTEST_SKIP() << "this CPU has no AVX-512: the loop never runs";
    int cases = 0;
    const uint64_t rows_before = quant::int_pack_avx512_rows_run();
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (const char *strategy : {"group", "channel", "tensor"}) {
            for (int bits : {4, 8}) {
                for (const std::string &format : {exporter::fmt_name::pack_quantized, exporter::fmt_name::int_quantized}) {
                    for (int64_t group : {int64_t(128), int64_t(32), int64_t(16)}) {
                        const bool grouped = std::string(strategy) == "group";
                        if (!grouped && group != 128) continue;
                        quant::quant_args a;
                        a.num_bits = bits;
                        a.strategy = grouped ? quant::quant_strategy::group
                                     : std::string(strategy) == "channel" ? quant::quant_strategy::channel
                                                                          : quant::quant_strategy::tensor;
                        if (grouped) a.group_size = static_cast<int>(group);
                        a = quant::make_args(a);
                        quant::quant_scheme scheme;
                        scheme.weights = a;
                        const int64_t rows = 37, cols = grouped ? 256 : 208;
                        at::Tensor w = weight(rows, cols, dtype, 500 + cases);
                        const quant::qparams qp = quant::qparams_observe(a, w);
                        at::Tensor s = qp.scale.to(at::kFloat);
                        s = grouped ? s.repeat_interleave(group, 1) : s.expand({rows, cols});
                        // Row 2: ties (k + 0.5) * s; row 3: past the clamp, -0 and values far
                        // below the scale.
                        at::Tensor ties = (at::arange(cols, at::kFloat) % 17 - 8.5) * s[2];
                        at::Tensor odd = at::where(at::arange(cols) % 3 == 0, 40.0 * s[3],
                                                   at::where(at::arange(cols) % 3 == 1, at::full({cols}, -0.0),
                                                             -1e-3 * s[3]));
                        w = w.clone();
                        w.index_put_({2}, ties.to(dtype));
                        w.index_put_({3}, odd.to(dtype));
                        std::vector<saved_tensor> in{{"weight", w, ""}, {"weight_scale", qp.scale, ""}};
                        const std::string what = std::string(c10::toString(dtype)) + " " + strategy + " b" +
                                                 std::to_string(bits) + " g" + std::to_string(group) + " " + format;
                        double e_avx = -1, e_portable = -2;
                        const auto avx = compress(scheme, in, dtype, true, &e_avx, format);
                        quant::pack_avx512_enable(false);
                        const auto portable = compress(scheme, in, dtype, true, &e_portable, format);
                        quant::pack_avx512_enable(true);
                        expect_same(avx, portable, what);
                        EXPECT_EQ(e_avx, e_portable) << what;
                        EXPECT_GT(e_avx, 0.0) << what;
                        ++cases;
                    }
                }
            }
        }
    }
    EXPECT_EQ(cases, 2 * (3 + 1 + 1) * 2 * 2);
    // Every case packed its rows once with the loop on (not when switched off).
    EXPECT_EQ(quant::int_pack_avx512_rows_run() - rows_before, static_cast<uint64_t>(cases * 37));
}

// Without stored qparams, symmetric INT groups and channels of bf16 or float weights are observed
// by the AVX-512 loop itself, each group's scale from its values just before its codes: the same
// scales, words, int8 values and error, bit for bit, as observing with the tensor-free observer
// and packing with the portable loop; for all-zero groups (scale eps), -0, values far below their
// group's largest and magnitudes from 1e-30 to 1e30. A group holding infinity is declined and
// the block goes the generic way (the same result again).
TEST(export_fast, avx512_observing_loop_matches_observing_first) {
    if (!avx512_int_loop_runs()) GTEST_SKIP() << "this CPU has no AVX-512: the loop never runs";
    int cases = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (int bits : {4, 8}) {
            for (const std::string &format : {exporter::fmt_name::pack_quantized, exporter::fmt_name::int_quantized}) {
                for (int64_t group : {int64_t(128), int64_t(32), int64_t(16), int64_t(0)}) {
                    quant::quant_args a;
                    a.num_bits = bits;
                    a.strategy = group ? quant::quant_strategy::group : quant::quant_strategy::channel;
                    if (group) a.group_size = static_cast<int>(group);
                    a = quant::make_args(a);
                    quant::quant_scheme scheme;
                    scheme.weights = a;
                    const int64_t rows = 41, cols = 256;
                    at::Tensor w = weight(rows, cols, dtype, 900 + cases).to(at::kFloat);
                    // Row 2: magnitudes from 1e-30 to 1e30 along it; row 3: -0 and values far
                    // below the row's largest; row 4: a group of zeros beside nonzero ones.
                    w.index_put_({2}, at::pow(10.0, at::linspace(-30, 30, cols)) *
                                          at::where(at::arange(cols) % 2 == 0, 1.0, -1.0));
                    w.index_put_({3}, at::where(at::arange(cols) % 3 == 0, at::full({cols}, -0.0),
                                                at::where(at::arange(cols) % 3 == 1, 1e-4 * w[3], w[3])));
                    w.index_put_({4, at::indexing::Slice(0, 16)}, 0.0);
                    w = w.to(dtype);
                    const std::string what = std::string(c10::toString(dtype)) + " b" + std::to_string(bits) +
                                             (group ? " g" + std::to_string(group) : std::string(" channel")) + " " +
                                             format;
                    const std::vector<saved_tensor> bare{{"weight", w, ""}};
                    const uint64_t before = quant::int_pack_avx512_rows_run();
                    double e_avx = -1, e_portable = -2;
                    const auto avx = compress(scheme, bare, dtype, true, &e_avx, format);
                    EXPECT_EQ(quant::int_pack_avx512_rows_run() - before, static_cast<uint64_t>(rows)) << what;
                    quant::pack_avx512_enable(false);
                    const auto portable = compress(scheme, bare, dtype, true, &e_portable, format);
                    quant::pack_avx512_enable(true);
                    expect_same(avx, portable, what);
                    EXPECT_EQ(e_avx, e_portable) << what;
                    // Infinity: the loop declines the block, which the generic way writes.
                    at::Tensor inf = w.clone();
                    inf.index_put_({5, 7}, std::numeric_limits<float>::infinity());
                    const std::vector<saved_tensor> bare_inf{{"weight", inf, ""}};
                    const auto avx_inf = compress(scheme, bare_inf, dtype, true, nullptr, format);
                    quant::pack_avx512_enable(false);
                    expect_same(avx_inf, compress(scheme, bare_inf, dtype, true, nullptr, format), what + " inf");
                    quant::pack_avx512_enable(true);
                    ++cases;
                }
            }
        }
    }
    EXPECT_EQ(cases, 2 * 2 * 2 * 4);
}

// Without stored qparams the exporter observes each block of rows in the pass that packs it: the
// same scales, zero points and words as observing the whole weight first, whichever dtype,
// strategy and symmetry, over several blocks. An MSE observer is not blockwise (its search
// stops on the whole tensor's progress) and observes the whole weight first.
TEST(export_fast, observing_in_the_pack_pass_matches_observing_first) {
    int cases = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat, at::kHalf}) {
        for (const char *strategy : {"group", "channel"}) {
            for (bool symmetric : {true, false}) {
                for (const char *observer : {"minmax", "memoryless_mse"}) {
                    quant::quant_args a;
                    a.num_bits = 4;
                    a.symmetric = symmetric;
                    a.observer = observer;
                    a.strategy = std::string(strategy) == "group" ? quant::quant_strategy::group
                                                                  : quant::quant_strategy::channel;
                    if (a.strategy == quant::quant_strategy::group) a.group_size = 64;
                    a = quant::make_args(a);
                    quant::quant_scheme scheme;
                    scheme.weights = a;
                    // 256 KiB blocks: bf16 rows of 256 columns make 512-row blocks, so 1100 rows are 3.
                    const at::Tensor w = weight(1100, 256, dtype, 77 + cases);
                    const quant::qparams qp = quant::qparams_observe(a, w);
                    // Directly: min/max observes block by block, MSE declines.
                    quant::qparams fused;
                    const at::Tensor packed = quant::observe_quantize_pack_int32(a, w, fused);
                    if (std::string(observer) == "minmax") {
                        ASSERT_TRUE(packed.defined());
                        EXPECT_TRUE(at::equal(fused.scale, qp.scale));
                        if (!symmetric) EXPECT_TRUE(at::equal(fused.zero_point, qp.zero_point));
                        EXPECT_TRUE(at::equal(packed, quant::quantize_pack_int32(a, w, qp)));
                        quant::qparams fused8;
                        const at::Tensor codes = quant::observe_quantize_int8_codes(a, w, fused8);
                        ASSERT_TRUE(codes.defined());
                        EXPECT_TRUE(at::equal(fused8.scale, qp.scale));
                        EXPECT_TRUE(at::equal(codes, quant::quantize(a, w, qp)));
                    } else {
                        EXPECT_FALSE(packed.defined()) << "MSE is not blockwise";
                        quant::qparams unused;
                        EXPECT_FALSE(quant::observe_quantize_int8_codes(a, w, unused).defined());
                    }
                    std::vector<saved_tensor> stored{{"weight", w, ""}, {"weight_scale", qp.scale, ""}};
                    if (!symmetric) stored.push_back({"weight_zero_point", qp.zero_point, ""});
                    const std::vector<saved_tensor> bare{{"weight", w, ""}};
                    const std::string what = std::string(c10::toString(dtype)) + " " + strategy + " " +
                                             (symmetric ? "sym " : "asym ") + observer;
                    double e_bare = -1, e_stored = -2;
                    expect_same(compress(scheme, bare, dtype, true, &e_bare), compress(scheme, stored, dtype, true, &e_stored),
                                what);
                    EXPECT_NEAR(e_bare, e_stored, 1e-6 * e_stored) << what;
                    expect_same(compress(scheme, bare, dtype, true), compress(scheme, bare, dtype, false), what + " generic");
                    if (std::string(observer) != "minmax") {
                        ++cases;
                        continue;
                    }
                    const std::string &int8 = exporter::fmt_name::int_quantized;
                    expect_same(compress(scheme, bare, dtype, true, &e_bare, int8),
                                compress(scheme, stored, dtype, false, &e_stored, int8), what + " int8");
                    EXPECT_NEAR(e_bare, e_stored, 1e-6 * e_stored) << what << " int8";
                    ++cases;
                }
            }
        }
    }
    EXPECT_EQ(cases, 24);
}

// The tensor-free observer the fused pass uses gives qparams_observe's scales and zero points bit
// for bit: rows whose magnitudes span 1e-30 to 1e30, all-positive and all-negative rows, -0 and
// all-zero groups (scale eps when symmetric; asymmetric declines their 0/0 zero point), 2 to 8
// bits, scale_dtype unset or the weight's. It declines NaN and infinity, and serves no other args.
TEST(export_fast, tensor_free_observer_matches_qparams_observe) {
    int compared = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (int bits : {2, 3, 4, 8}) {
            for (bool symmetric : {true, false}) {
                for (int group : {32, 0}) {
                    for (bool scale_dtype : {false, true}) {
                        quant::quant_args a;
                        a.num_bits = bits;
                        a.symmetric = symmetric;
                        a.strategy = group ? quant::quant_strategy::group : quant::quant_strategy::channel;
                        if (group) a.group_size = group;
                        if (scale_dtype)
                            a.scale_dtype = dtype == at::kFloat ? quant::dtype_id::float32 : quant::dtype_id::bfloat16;
                        a = quant::make_args(a);
                        ASSERT_TRUE(quant::observe_rows_minmax_applies(a, dtype));
                        const int64_t rows = 70, cols = 128;
                        at::Generator gen = at::detail::createCPUGenerator(1000 + compared);
                        at::Tensor w = at::empty({rows, cols}, at::kFloat).normal_(0.0, 1.0, gen);
                        w *= at::pow(10.0, at::linspace(-30, 30, rows).unsqueeze(1));
                        w.index_put_({0}, w.index({0}).abs());  // all positive
                        w.index_put_({1}, -w.index({1}).abs()); // all negative
                        w.index_put_({2, at::indexing::Slice(0, 7)}, -0.0);
                        if (symmetric) {
                            w.index_put_({3}, -0.0); // all -0
                            w.index_put_({4}, 0.0);  // all zero
                        }
                        w = w.to(dtype);
                        const quant::qparams expect = quant::qparams_observe(a, w);
                        at::Tensor scale = at::empty_like(expect.scale), zp = at::empty(expect.scale.sizes(), at::kChar);
                        const std::string what = std::string(c10::toString(dtype)) + " " + std::to_string(bits) +
                                                 " bits " + (symmetric ? "sym " : "asym ") + std::to_string(group) +
                                                 (scale_dtype ? " scale_dtype" : "");
                        ASSERT_TRUE(quant::observe_rows_minmax(a, w, scale, zp)) << what;
                        EXPECT_EQ(scale.scalar_type(), expect.scale.scalar_type()) << what;
                        EXPECT_TRUE(at::equal(scale, expect.scale)) << what;
                        ASSERT_EQ(expect.zero_point.scalar_type(), at::kChar) << what;
                        EXPECT_TRUE(at::equal(zp, expect.zero_point)) << what;
                        ++compared;
                        // A NaN or an infinity anywhere, or (asymmetric) an all-zero group: the
                        // generic path decides.
                        for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), 0.0}) {
                            if (bad == 0.0 && symmetric) continue;
                            at::Tensor v = w.clone();
                            v.index_put_({5, at::indexing::Slice(0, group ? group : cols)}, bad);
                            EXPECT_FALSE(quant::observe_rows_minmax(a, v, scale, zp)) << what << " " << bad;
                        }
                    }
                }
            }
        }
    }
    EXPECT_EQ(compared, 2 * 4 * 2 * 2 * 2);
    // Other args and dtypes are not served.
    quant::quant_args a = int4_group(32);
    EXPECT_FALSE(quant::observe_rows_minmax_applies(a, at::kHalf));
    a.observer = "memoryless_mse";
    EXPECT_FALSE(quant::observe_rows_minmax_applies(quant::make_args(a), at::kBFloat16));
    a = int4_group(32);
    a.scale_dtype = quant::dtype_id::float16;
    EXPECT_FALSE(quant::observe_rows_minmax_applies(quant::make_args(a), at::kBFloat16));
}

// A row reader (the exporter's: rows from the checkpoint file) supplies each block's bytes; one
// that declines leaves them to be read from the weight. Either way the result is the same.
TEST(export_fast, rows_come_through_the_reader_when_it_reads) {
    const quant::quant_args a = int4_group(128);
    const at::Tensor w = weight(2000, 512, at::kBFloat16, 5);
    const at::Tensor copy = w.clone();
    int calls = 0;
    const quant::row_reader from_copy = [&](int64_t r0, int64_t r1, void *dst) {
        ++calls;
        std::memcpy(dst, copy[r0].data_ptr(), static_cast<size_t>((r1 - r0) * copy.size(1) * copy.element_size()));
        return true;
    };
    const quant::row_reader declines = [&](int64_t, int64_t, void *) { return false; };
    quant::qparams direct, via, declined;
    double e_direct = 0, e_via = 0;
    const at::Tensor p_direct = quant::observe_quantize_pack_int32(a, w, direct, &e_direct);
    // The reader's bytes are what is packed: poison the weight to see it is not read.
    const at::Tensor poisoned = at::zeros_like(w);
    const at::Tensor p_via = quant::observe_quantize_pack_int32(a, poisoned, via, &e_via, from_copy);
    const at::Tensor p_declined = quant::observe_quantize_pack_int32(a, w, declined, nullptr, declines);
    ASSERT_TRUE(p_direct.defined() && p_via.defined() && p_declined.defined());
    EXPECT_GT(calls, 1);
    EXPECT_TRUE(at::equal(p_direct, p_via));
    EXPECT_TRUE(at::equal(p_direct, p_declined));
    EXPECT_TRUE(at::equal(direct.scale, via.scale));
    EXPECT_EQ(e_direct, e_via);
    // With stored qparams the reader serves the pack pass alone.
    calls = 0;
    const at::Tensor p_stored = quant::quantize_pack_int32(a, poisoned, direct, nullptr, nullptr, from_copy);
    EXPECT_GT(calls, 1);
    EXPECT_TRUE(at::equal(p_stored, p_direct));
}

namespace {

// FP8 E4M3 weights (symmetric unless asked), strategy by name: "block" is 16 x 64 blocks, "mx"
// the MXFP8 preset's weights (groups of 32, E8M0 scales).
quant::quant_args fp8_args(const std::string &strategy, bool symmetric = true, const char *observer = nullptr) {
    if (strategy == "mx") return quant::preset_scheme("MXFP8A16", {"Linear"}).weights.value();
    quant::quant_args a;
    a.num_bits = 8;
    a.type = quant::quant_type::float_;
    a.symmetric = symmetric;
    if (observer) a.observer = observer;
    a.strategy = strategy == "group"     ? quant::quant_strategy::group
                 : strategy == "channel" ? quant::quant_strategy::channel
                 : strategy == "block"   ? quant::quant_strategy::block
                                         : quant::quant_strategy::tensor;
    if (strategy == "group") a.group_size = 64;
    if (strategy == "block") a.block_structure = std::array<int, 2>{16, 64};
    return quant::make_args(a);
}

} // namespace

// FP8 codes from the fused pass are quantize()'s, byte for byte: every float dtype, strategies
// tensor, channel, group, block (37 rows: the last block of rows is partial) and MX (the
// mxfp8-quantized format), scales in the weight's dtype or float32; ties between neighbouring
// codes, -0, subnormal codes and saturation (stored scales half the observed ones, so quotients
// pass 448), with and without a stored zero point; and the error equals fake_quantize's.
TEST(export_fast, fp8_codes_match_the_generic_path) {
    int cases = 0;
    const uint64_t before = fast_taken, avx_before = quant::fp8_pack_avx512_rows_run();
    uint64_t avx_rows = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat, at::kHalf}) {
        for (const char *strategy : {"channel", "tensor", "group", "block", "mx"}) {
            const quant::quant_args a = fp8_args(strategy);
            const bool mx = std::string(strategy) == "mx";
            const std::string format = mx ? exporter::fmt_name::mxfp8_quantized : exporter::fmt_name::float_quantized;
            quant::quant_scheme scheme;
            scheme.weights = a;
            const int64_t rows = 37, cols = 256;
            at::Tensor w = weight(rows, cols, dtype, 3000 + cases);
            w.index_put_({2, at::indexing::Slice(0, 9)}, -0.0);
            const quant::qparams qp = quant::qparams_observe(a, w);
            for (at::ScalarType sdt : {dtype, at::kFloat}) {
                for (const char *data : {"random", "ties", "saturating"}) {
                    at::Tensor s = qp.scale.to(sdt);
                    at::Tensor x = w;
                    if (std::string(data) == "ties") {
                        // Midpoints between neighbouring codes (and their neighbours' exact
                        // values), times the scale: x / s lands on the tie.
                        at::Tensor grid = quant::fp8_e4m3_decode(at::arange(0, 126, at::kLong).to(at::kByte));
                        at::Tensor mids = (grid.slice(0, 0, 125) + grid.slice(0, 1, 126)) / 2;
                        at::Tensor vals = at::cat({mids, grid, -mids}).repeat({(rows * cols) / 376 + 1});
                        vals = vals.slice(0, 0, rows * cols).view({rows, cols});
                        at::Tensor sf = s.to(at::kFloat);
                        if (std::string(strategy) == "group") sf = sf.repeat_interleave(64, 1);
                        if (mx) sf = sf.repeat_interleave(32, 1);
                        if (std::string(strategy) == "block")
                            sf = sf.repeat_interleave(16, 0).slice(0, 0, rows).repeat_interleave(64, 1);
                        x = (vals * sf).to(dtype);
                    } else if (std::string(data) == "saturating") {
                        s = (qp.scale.to(at::kFloat) / 2).to(sdt);
                    }
                    // The zero point (zeros) stored or not, alternately; among the stored ones,
                    // every third -0 and every third 1.5 (adding either still rounds in the
                    // computation dtype: the loops keep the general zero-point path for them).
                    const bool with_zp = cases % 2 == 0;
                    const int zp_kind = (cases / 2) % 3; // 0 zeros, 1 -0, 2 1.5
                    at::Tensor zp = qp.zero_point;
                    if (with_zp && zp_kind > 0)
                        zp = at::full(qp.zero_point.sizes(), zp_kind == 1 ? -0.0 : 1.5, at::TensorOptions().dtype(dtype));
                    std::vector<saved_tensor> in{{"weight", x, ""}, {"weight_scale", s, ""}};
                    if (with_zp) in.push_back({"weight_zero_point", zp, ""});
                    const std::string what = std::string(c10::toString(dtype)) + " " + strategy + " scale " +
                                             c10::toString(sdt) + " " + data +
                                             (with_zp ? " zero point " + std::to_string(zp_kind) : "");
                    double e_fast = -1, e_generic = -2;
                    const auto fast = compress(scheme, in, dtype, true, &e_fast, format);
                    const auto generic = compress(scheme, in, dtype, false, &e_generic, format);
                    expect_same(fast, generic, what);
                    EXPECT_EQ(fast.front().dtype, "F8_E4M3") << what;
                    EXPECT_NEAR(e_fast, e_generic, 1e-5 * e_generic + 1e-30) << what;
                    // The AVX-512 loop (bf16 and float weights and scales, where the CPU has it)
                    // against the portable one: the same codes and error, to the bit.
                    double e_portable = -3;
                    quant::pack_avx512_enable(false);
                    const auto portable = compress(scheme, in, dtype, true, &e_portable, format);
                    quant::pack_avx512_enable(true);
                    expect_same(fast, portable, what + " portable loop");
                    EXPECT_EQ(e_fast, e_portable) << what;
                    if (dtype != at::kHalf) avx_rows += rows;
                    // A zero point is added as quantize_values adds it: -0 becomes +0 (code 0);
                    // without one, or with a -0 one, -0 keeps its sign (code 0x80).
                    if (std::string(data) == "random" && (!with_zp || zp_kind < 2))
                        EXPECT_EQ(fast.front().tensor[2][0].item<uint8_t>(), with_zp && zp_kind == 0 ? 0 : 0x80)
                            << what;
                    ++cases;
                }
            }
        }
    }
    EXPECT_EQ(cases, 3 * 5 * 2 * 3);
    EXPECT_EQ(fast_taken - before, static_cast<uint64_t>(2 * cases)) << "the fused path did not run for every case";
    quant::fp8_pack_rows probe;
    probe.cols = probe.group = 16;
    probe.out = reinterpret_cast<uint8_t *>(&probe);
    if (quant::fp8_pack_avx512_serves(probe))
        EXPECT_EQ(quant::fp8_pack_avx512_rows_run() - avx_before, avx_rows) << "the AVX-512 loop did not run";
}

// Without stored qparams, FP8 channel, group and MX weights are observed block by block in the pass
// that encodes them: the scales and codes of observing the whole weight first. MSE declines.
TEST(export_fast, fp8_observing_in_the_pass_matches_observing_first) {
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (const char *strategy : {"channel", "group", "mx"}) {
            for (const char *observer : {"minmax", "memoryless_mse"}) {
                if (std::string(strategy) == "mx" && std::string(observer) != "minmax") continue;
                const quant::quant_args a = fp8_args(strategy, true, observer);
                const at::Tensor w = weight(1100, 256, dtype, 91);
                const quant::qparams qp = quant::qparams_observe(a, w);
                quant::qparams fused;
                double e = -1;
                const at::Tensor codes = quant::observe_quantize_fp8_codes(a, w, fused, &e);
                const std::string what = std::string(c10::toString(dtype)) + " " + strategy + " " + observer;
                if (std::string(observer) != "minmax") {
                    EXPECT_FALSE(codes.defined()) << what;
                    continue;
                }
                ASSERT_TRUE(codes.defined()) << what;
                EXPECT_TRUE(at::equal(fused.scale, qp.scale)) << what;
                EXPECT_TRUE(at::equal(codes, quant::quantize(a, w, qp))) << what;
                const double expect =
                    (quant::fake_quantize(a, w, qp).to(at::kFloat) - w.to(at::kFloat)).pow(2).mean().item<double>();
                EXPECT_NEAR(e, expect, 1e-5 * expect) << what;
            }
        }
    }
}

// Block-strategy weights (FP8 as FP8_BLOCK, INT 8- and 4-bit, symmetric or not) without stored
// qparams are observed in the pass too, in whole bands of the blocks' rows (a cut-short last band,
// bands taller than the ~256 KiB the pass reads at a time), and symmetric FP8 channel and group
// weights through the tensor-free observer: its scales and zero points, the codes and the error
// are those of observing the whole weight first, and the exporter writes the generic path's bytes.
TEST(export_fast, block_weights_observed_in_the_pass_match_observing_first) {
    struct kind {
        const char *name;
        quant::quant_args args;
        std::string format;
    };
    auto int_block = [](int bits, bool symmetric, int bh, int bw) {
        quant::quant_args a;
        a.num_bits = bits;
        a.symmetric = symmetric;
        a.strategy = quant::quant_strategy::block;
        a.block_structure = std::array<int, 2>{bh, bw};
        return quant::make_args(a);
    };
    const quant::quant_args fp8_block = quant::preset_scheme("FP8_BLOCK", {"Linear"}).weights.value();
    ASSERT_EQ(fp8_block.strategy, quant::quant_strategy::block);
    const kind kinds[] = {
        {"FP8_BLOCK preset", fp8_block, exporter::fmt_name::float_quantized},
        {"fp8 block 16x64", fp8_args("block"), exporter::fmt_name::float_quantized},
        {"fp8 channel", fp8_args("channel"), exporter::fmt_name::float_quantized},
        {"fp8 group", fp8_args("group"), exporter::fmt_name::float_quantized},
        {"int8 block 128x128", int_block(8, true, 128, 128), exporter::fmt_name::int_quantized},
        {"int4 asym block 16x64", int_block(4, false, 16, 64), exporter::fmt_name::pack_quantized},
    };
    int cases = 0;
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        for (const kind &k : kinds) {
            const quant::quant_args &a = k.args;
            const std::string what = std::string(c10::toString(dtype)) + " " + k.name;
            ASSERT_TRUE(quant::observe_rows_minmax_applies(a, dtype)) << what;
            // 1100 rows: bands of 128 end 76 rows short, of 16 end 12 short. 384 bf16 columns
            // read 341 rows at a time, rounded up to whole bands.
            const at::Tensor w = weight(1100, 384, dtype, 500 + cases);
            const quant::qparams qp = quant::qparams_observe(a, w);
            at::Tensor scale = at::empty_like(qp.scale), zp = at::empty_like(qp.zero_point);
            ASSERT_TRUE(quant::observe_rows_minmax(a, w, scale, zp)) << what;
            EXPECT_TRUE(at::equal(scale, qp.scale)) << what;
            ASSERT_EQ(zp.scalar_type(), qp.zero_point.scalar_type()) << what;
            EXPECT_TRUE(at::equal(zp, qp.zero_point)) << what;

            quant::qparams fused;
            double e = -1;
            const bool fp8 = a.is_fp8();
            const at::Tensor out = fp8 ? quant::observe_quantize_fp8_codes(a, w, fused, &e)
                                   : k.format == exporter::fmt_name::int_quantized
                                       ? quant::observe_quantize_int8_codes(a, w, fused, &e)
                                       : quant::observe_quantize_pack_int32(a, w, fused, &e);
            ASSERT_TRUE(out.defined()) << what;
            EXPECT_TRUE(at::equal(fused.scale, qp.scale)) << what;
            ASSERT_EQ(fused.zero_point.scalar_type(), qp.zero_point.scalar_type()) << what;
            EXPECT_TRUE(at::equal(fused.zero_point, qp.zero_point)) << what;
            const at::Tensor q = quant::quantize(a, w, qp);
            if (k.format == exporter::fmt_name::pack_quantized)
                EXPECT_TRUE(at::equal(out, quant::pack_int32(q, a.num_bits, 1))) << what;
            else EXPECT_TRUE(at::equal(out, q)) << what;
            const double expect =
                (quant::fake_quantize(a, w, qp).to(at::kFloat) - w.to(at::kFloat)).pow(2).mean().item<double>();
            EXPECT_NEAR(e, expect, 1e-5 * expect) << what;

            quant::quant_scheme scheme;
            scheme.weights = a;
            const std::vector<saved_tensor> bare{{"weight", w, ""}};
            const uint64_t before = fast_taken;
            expect_same(compress(scheme, bare, dtype, true, nullptr, k.format),
                        compress(scheme, bare, dtype, false, nullptr, k.format), what + " exported");
            EXPECT_EQ(fast_taken - before, 1u) << what;
            ++cases;
        }
    }
    EXPECT_EQ(cases, 12);
    // A block width that does not divide the columns is padded by the generic path.
    quant::qparams unused;
    EXPECT_FALSE(quant::observe_quantize_fp8_codes(fp8_args("block"), weight(40, 100, at::kBFloat16, 1), unused)
                     .defined());
}

// A NaN quotient is left to the generic path, INT or FP8.
TEST(export_fast, nan_weights_take_the_generic_path) {
    const std::pair<quant::quant_args, std::string> cases[] = {
        {int4_group(32), exporter::fmt_name::pack_quantized},
        {fp8_args("channel"), exporter::fmt_name::float_quantized}};
    for (const auto &[a, format] : cases) {
        quant::quant_scheme scheme;
        scheme.weights = a;
        at::Tensor w = weight(4, 64, at::kBFloat16, 7);
        const quant::qparams qp = quant::qparams_observe(a, w);
        w.index_put_({2, 5}, std::numeric_limits<float>::quiet_NaN());
        std::vector<saved_tensor> in{{"weight", w, ""}, {"weight_scale", qp.scale, ""}};
        const uint64_t before = fast_taken;
        expect_same(compress(scheme, in, at::kBFloat16, true, nullptr, format),
                    compress(scheme, in, at::kBFloat16, false, nullptr, format), "nan " + format);
        EXPECT_EQ(fast_taken, before) << "NaN must fall back to the generic path: " << format;
    }
}

// NVFP4 (tensor_group, group 16, a global scale) and MXFP4 (group 32, E8M0 scales) weights: the
// fused pass packs quantize()'s codes byte for byte, in every float dtype, for random values, for
// quotients on every rounding threshold of the E2M1 grid (ties go to the even mantissa), for -0
// and small negatives (code 8), and for quotients past ±6, with and without a stored zero point;
// its error equals fake_quantize's.
TEST(export_fast, fp4_packed_codes_match_the_generic_path) {
    int cases = 0;
    const uint64_t before = fast_taken, avx_before = quant::fp4_pack_avx512_rows_run();
    uint64_t avx_rows = 0;
    for (const char *preset : {"NVFP4A16", "MXFP4A16"}) {
        const quant::quant_scheme scheme = quant::preset_scheme(preset, {"Linear"});
        const quant::quant_args &a = *scheme.weights;
        const std::string format = std::string(preset) == "NVFP4A16" ? exporter::fmt_name::nvfp4_pack_quantized
                                                                      : exporter::fmt_name::mxfp4_pack_quantized;
        const int64_t group = *a.group_size;
        for (at::ScalarType dtype : {at::kBFloat16, at::kFloat, at::kHalf}) {
            for (const char *data : {"random", "thresholds", "saturating", "random", "thresholds", "saturating"}) {
                const int64_t rows = 37, cols = 256;
                at::Tensor w = weight(rows, cols, dtype, 4000 + cases);
                w.index_put_({2, at::indexing::Slice(0, 9)}, -0.0);
                const quant::qparams qp = quant::qparams_observe(a, w);
                at::Tensor s = qp.scale.to(at::kFloat);
                if (qp.global_scale.defined()) s = s / qp.global_scale;
                s = s.repeat_interleave(group, 1);
                if (std::string(data) == "thresholds") {
                    // Every threshold and grid value, each sign, and the smallest negatives.
                    const at::Tensor t = at::tensor({0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f, 2.0f, 2.5f, 3.0f,
                                                     3.5f, 4.0f, 5.0f, 6.0f, 0.1f});
                    at::Tensor vals = at::cat({t, -t}).repeat({(rows * cols) / 32 + 1}).slice(0, 0, rows * cols);
                    w = (vals.view({rows, cols}) * s).to(dtype);
                } else if (std::string(data) == "saturating") {
                    w = (w.to(at::kFloat) * 3).to(dtype); // quotients up to ~18 against the stored scales
                }
                std::vector<saved_tensor> in{{"weight", w, ""}, {"weight_scale", qp.scale, ""}};
                if (qp.global_scale.defined()) in.push_back({"weight_global_scale", qp.global_scale, ""});
                // The observer's zero point (zeros), stored or not: with it, quantize_values adds
                // it, which turns a -0 quotient into +0.
                const bool with_zp = cases % 2 == 1;
                ASSERT_TRUE(qp.zero_point.defined());
                if (with_zp) in.push_back({"weight_zero_point", qp.zero_point, ""});
                const std::string what = std::string(preset) + " " + c10::toString(dtype) + " " + data +
                                         (with_zp ? " zero point" : "");
                double e_fast = -1, e_generic = -2, e_portable = -3;
                const auto fast = compress(scheme, in, dtype, true, &e_fast, format);
                const auto generic = compress(scheme, in, dtype, false, &e_generic, format);
                expect_same(fast, generic, what);
                EXPECT_NEAR(e_fast, e_generic, 1e-5 * e_generic + 1e-30) << what;
                // The AVX-512 loop (bf16 and float weights, where the CPU has it) against the
                // portable one: the same bytes and the same error, to the bit.
                quant::pack_avx512_enable(false);
                const auto portable = compress(scheme, in, dtype, true, &e_portable, format);
                quant::pack_avx512_enable(true);
                expect_same(fast, portable, what + " portable loop");
                EXPECT_EQ(e_fast, e_portable) << what;
                if (dtype != at::kHalf) avx_rows += rows;
                ++cases;
            }
        }
    }
    EXPECT_EQ(cases, 2 * 3 * 6);
    EXPECT_EQ(fast_taken - before, static_cast<uint64_t>(2 * cases)) << "the fused path did not run for every case";
    quant::fp4_pack_rows probe;
    probe.cols = probe.group = 16;
    probe.out = reinterpret_cast<uint8_t *>(&probe);
    if (quant::fp4_pack_avx512_serves(probe))
        EXPECT_EQ(quant::fp4_pack_avx512_rows_run() - avx_before, avx_rows) << "the AVX-512 loop did not run";
}

// Without stored qparams, MXFP4 weights are observed block by block in the pass that packs them:
// the scales and bytes of observing the whole weight first (over several 256 KiB blocks). NVFP4's
// global scale is the whole tensor's, so it declines.
TEST(export_fast, fp4_observing_in_the_pass_matches_observing_first) {
    for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
        const quant::quant_scheme mx = quant::preset_scheme("MXFP4A16", {"Linear"});
        const quant::quant_args &a = *mx.weights;
        const at::Tensor w = weight(1100, 256, dtype, 93);
        const quant::qparams qp = quant::qparams_observe(a, w);
        quant::qparams fused;
        double e = -1;
        const at::Tensor packed = quant::observe_quantize_fp4_packed(a, w, fused, &e);
        const std::string what = c10::toString(dtype);
        ASSERT_TRUE(packed.defined()) << what;
        EXPECT_TRUE(at::equal(fused.scale, qp.scale)) << what;
        EXPECT_TRUE(at::equal(packed, quant::pack_fp4(quant::quantize(a, w, qp)))) << what;
        const double expect =
            (quant::fake_quantize(a, w, qp).to(at::kFloat) - w.to(at::kFloat)).pow(2).mean().item<double>();
        EXPECT_NEAR(e, expect, 1e-5 * expect) << what;
        // Through the exporter: bare weights give the bytes of stored qparams.
        const std::vector<saved_tensor> bare{{"weight", w, ""}};
        const std::vector<saved_tensor> stored{{"weight", w, ""}, {"weight_scale", qp.scale, ""}};
        expect_same(compress(mx, bare, dtype, true, nullptr, exporter::fmt_name::mxfp4_pack_quantized),
                    compress(mx, stored, dtype, false, nullptr, exporter::fmt_name::mxfp4_pack_quantized), what);
        quant::qparams unused;
        const quant::quant_args nv = quant::preset_scheme("NVFP4A16", {"Linear"}).weights.value();
        EXPECT_FALSE(quant::observe_quantize_fp4_packed(nv, w, unused).defined()) << what;
    }
}
