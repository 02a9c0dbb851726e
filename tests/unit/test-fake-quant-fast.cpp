// The scalar fast path of fake_quantize (host/src/quant/fake_quant_fast.cpp) against the generic
// torch-op path, bit for bit: the same values, the same dtype. The generic path is reached by
// handing fake_quantize the same values in a layout the fast path does not take.
#include "quant/args.h"
#include "quant/fake_quant_fast.h"
#include "quant/minmax_fast.h"
#include "quant/observe_joined.h"
#include "quant/presets.h"
#include "quant/qparams.h"
#include "quant/qparams_fast.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace llmc::quant;
using json = nlohmann::json;

namespace {

quant_args args_of(const std::string &text) { return args_from_json(json::parse(text), "test"); }

// fake_quantize with the same values and qparams, laid out so the fast path declines it: x as a
// strided view (rows 3·cols apart), or for one row 1-D qparams (they broadcast the same way).
at::Tensor generic_path(const quant_args &a, const at::Tensor &x, const qparams &qp) {
    if (x.size(0) == 1) {
        qparams flat = qp;
        flat.scale = qp.scale.reshape({1});
        if (qp.zero_point.defined()) flat.zero_point = qp.zero_point.reshape({1});
        EXPECT_FALSE(fake_quantize_fast(a, x, flat).defined());
        return fake_quantize(a, x, flat).contiguous();
    }
    at::Tensor wide = at::zeros({x.size(0), x.size(1) * 3}, x.options());
    at::Tensor view = wide.slice(1, 0, x.size(1));
    view.copy_(x);
    EXPECT_FALSE(view.is_contiguous());
    EXPECT_FALSE(fake_quantize_fast(a, view, qp).defined());
    return fake_quantize(a, view, qp).contiguous();
}

// A NaN stays NaN on both paths, but not with the same bits: ATen encodes a bf16 NaN as 0xFFFF
// in its vectorized kernels and 0x7FC0 in scalar ones (c10::BFloat16), which the fast path uses.
// Checks the NaN positions agree and replaces them with 0 before the bitwise comparison.
at::Tensor same_nans(const at::Tensor &fast, const at::Tensor &generic, const std::string &what) {
    const at::Tensor nan = at::isnan(generic);
    EXPECT_TRUE(at::equal(at::isnan(fast), nan)) << what;
    return nan;
}

// fake_quantize through the fast path and through the generic path must agree bit for bit.
void expect_same(const quant_args &a, const at::Tensor &x, const qparams &qp, const std::string &what) {
    at::Tensor fast = fake_quantize_fast(a, x, qp);
    ASSERT_TRUE(fast.defined()) << what;
    at::Tensor through = fake_quantize(a, x, qp).contiguous(); // what callers get
    at::Tensor generic = generic_path(a, x, qp);
    if (at::isnan(x).any().item<bool>()) {
        const at::Tensor nan = same_nans(fast, generic, what);
        fast = fast.masked_fill(nan, 0);
        through = through.masked_fill(nan, 0);
        generic = generic.masked_fill(nan, 0);
    }
    ASSERT_EQ(fast.scalar_type(), generic.scalar_type()) << what;
    ASSERT_EQ(through.scalar_type(), generic.scalar_type()) << what;
    ASSERT_EQ(fast.sizes(), generic.sizes()) << what;
    const size_t bytes = static_cast<size_t>(generic.numel() * generic.element_size());
    EXPECT_EQ(std::memcmp(fast.data_ptr(), generic.data_ptr(), bytes), 0) << what;
    EXPECT_EQ(std::memcmp(through.data_ptr(), generic.data_ptr(), bytes), 0) << what;
}

// Scales [rows, 1] of a given dtype: random magnitudes, some powers of two (exact ties).
at::Tensor make_scale(int64_t rows, at::ScalarType dtype) {
    at::Tensor s = at::exp(at::randn({rows, 1}) * 2.0) * 0.01;
    at::Tensor pow2 = at::pow(2.0, at::randint(-12, 2, {rows, 1}).to(at::kFloat));
    s = at::where(at::rand({rows, 1}) < 0.3, pow2, s);
    return s.to(dtype);
}

// Values around the grid: random, exactly half-way between levels (ties), and beyond the range.
at::Tensor make_x(const at::Tensor &scale, int64_t cols, double qmax) {
    const int64_t rows = scale.size(0);
    const at::Tensor s = scale.to(at::kFloat);
    at::Tensor k = at::randint(static_cast<int64_t>(-qmax) - 3, static_cast<int64_t>(qmax) + 3, {rows, cols});
    at::Tensor ties = (k.to(at::kFloat) + 0.5) * s; // exact when s is a power of two
    at::Tensor random = at::randn({rows, cols}) * s * qmax * 0.7;
    at::Tensor far = at::randn({rows, cols}) * s * qmax * 4.0;
    const at::Tensor pick = at::rand({rows, cols});
    return at::where(pick < 0.3, ties, at::where(pick < 0.8, random, far)).contiguous();
}

} // namespace

TEST(FakeQuantFast, MatchesGenericPathBitForBit) {
    at::manual_seed(1234);
    const char *cases[] = {
        R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "channel"})",
        R"({"num_bits": 4, "type": "int", "symmetric": false, "strategy": "channel"})",
        R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"})",
        R"({"num_bits": 8, "type": "int", "symmetric": false, "strategy": "channel"})",
        R"({"num_bits": 2, "type": "int", "symmetric": false, "strategy": "channel"})",
        R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "tensor"})",
        R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true})",
    };
    for (const char *text : cases) {
        const quant_args a = args_of(text);
        const double qmax = quant_range(a).second;
        for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
            for (int64_t rows : {1, 7, 64, 513}) {
                for (int64_t cols : {1, 3, 16}) {
                    for (bool with_zp : {false, true}) {
                        const std::string what = std::string(text) + " " + c10::toString(dtype) + " rows " +
                                                 std::to_string(rows) + " cols " + std::to_string(cols) +
                                                 (with_zp ? " zp" : "");
                        qparams qp;
                        qp.scale = make_scale(rows, dtype);
                        if (with_zp) {
                            const auto [lo, hi] = quant_range(a);
                            qp.zero_point = at::randint(static_cast<int64_t>(lo), static_cast<int64_t>(hi) + 1,
                                                        {rows, 1})
                                                .to(at::kChar);
                        }
                        expect_same(a, make_x(qp.scale, cols, qmax), qp, what);
                    }
                }
            }
        }
    }
}

TEST(FakeQuantFast, StridedQparamsAndSpecialValues) {
    at::manual_seed(99);
    const quant_args a = args_of(R"({"num_bits": 4, "type": "int", "symmetric": false, "strategy": "channel"})");
    // GPTQ's layout: qparams [groups, rows], a column uses row g, sliced to the task's rows.
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
        const at::Tensor scales = (at::rand({4, 300}) * 0.05 + 1e-3).to(dtype);
        const at::Tensor zps = at::randint(-8, 8, {4, 300}).to(at::kChar);
        qparams qp;
        qp.scale = scales[2].slice(0, 100, 228).unsqueeze(1);
        qp.zero_point = zps[2].slice(0, 100, 228).unsqueeze(1);
        at::Tensor x = at::randn({128, 1}) * 0.1;
        x[0][0] = std::numeric_limits<float>::infinity();
        x[1][0] = -std::numeric_limits<float>::infinity();
        x[2][0] = 0.0f;
        x[3][0] = -0.0f;
        x[4][0] = std::numeric_limits<float>::denorm_min();
        x[5][0] = std::numeric_limits<float>::max();
        x[6][0] = std::numeric_limits<float>::quiet_NaN();
        x[7][0] = -std::numeric_limits<float>::quiet_NaN();
        expect_same(a, x, qp, c10::toString(dtype));
        // Transposed qparams (a column view of [rows, groups]) work too.
        qparams qt;
        qt.scale = scales.t().slice(1, 1, 2);
        qt.zero_point = zps.t().contiguous().slice(1, 1, 2);
        expect_same(a, at::randn({300, 2}) * 0.1, qt, std::string("transposed ") + c10::toString(dtype));
    }
}

TEST(FakeQuantFast, DeclinesWhatItDoesNotCover) {
    const at::Tensor x = at::randn({8, 1});
    qparams qp;
    qp.scale = at::full({8, 1}, 0.1f);
    const quant_args group = args_of(R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group",
                                         "group_size": 1})");
    EXPECT_TRUE(fake_quantize_fast(group, x, qp).defined()); // [8, 1] groups of 1: one scale each
    qparams flat_scale = qp;
    flat_scale.scale = at::full({8}, 0.1f); // group scales must be [rows, columns / group_size]
    EXPECT_FALSE(fake_quantize_fast(group, x, flat_scale).defined());
    const quant_args fp8 = args_of(R"({"num_bits": 8, "type": "float", "symmetric": true, "strategy": "channel"})");
    EXPECT_FALSE(fake_quantize_fast(fp8, x, qp).defined());
    const quant_args int4 = args_of(R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "channel"})");
    EXPECT_TRUE(fake_quantize_fast(int4, x, qp).defined());
    EXPECT_FALSE(fake_quantize_fast(int4, x.to(at::kBFloat16), qp).defined()); // x must be fp32
    EXPECT_FALSE(fake_quantize_fast(int4, x.reshape({8}), qp).defined());      // 2-D only
    qparams with_gs = qp;
    with_gs.global_scale = at::ones({1});
    EXPECT_FALSE(fake_quantize_fast(int4, x, with_gs).defined());
    qparams zp32 = qp;
    zp32.zero_point = at::zeros({8, 1}, at::kInt);
    EXPECT_FALSE(fake_quantize_fast(int4, x, zp32).defined());
    qparams row_scale = qp;
    row_scale.scale = at::full({1, 8}, 0.1f); // broadcasts differently: generic path
    EXPECT_FALSE(fake_quantize_fast(int4, at::randn({8, 8}), row_scale).defined());
}

// Whole grouped weights (the modifiers' error figures, the forward pass): x and scale in any of
// fp32 / bf16 / fp16, computed in the wider of the two, dequantized in the scale's dtype and
// returned in x's, exactly as the generic path lays them out as [rows, groups, group_size].
TEST(FakeQuantFast, GroupsMatchGenericPathBitForBit) {
    at::manual_seed(4321);
    const char *cases[] = {
        R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 4})",
        R"({"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 32})",
        R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "group", "group_size": 8})",
        R"({"num_bits": 3, "type": "int", "symmetric": false, "strategy": "group", "group_size": 16})",
    };
    const at::ScalarType dtypes[] = {at::kFloat, at::kBFloat16, at::kHalf};
    for (const char *text : cases) {
        const quant_args a = args_of(text);
        const int64_t g = *a.group_size;
        const auto [lo, hi] = quant_range(a);
        for (at::ScalarType xt : dtypes)
            for (at::ScalarType st : dtypes)
                for (int64_t rows : {2, 5, 67})
                    for (int64_t groups : {1, 3}) {
                        const std::string what = std::string(text) + " x " + c10::toString(xt) + " scale " +
                                                 c10::toString(st) + " rows " + std::to_string(rows) + " groups " +
                                                 std::to_string(groups);
                        qparams qp;
                        qp.scale = make_scale(rows * groups, st).reshape({rows, groups});
                        if (!a.symmetric)
                            qp.zero_point = at::randint(static_cast<int64_t>(lo), static_cast<int64_t>(hi) + 1,
                                                        {rows, groups})
                                                .to(at::kChar);
                        const at::Tensor per_column = qp.scale.repeat_interleave(g, 1);
                        at::Tensor x = make_x(per_column, groups * g, hi).to(xt);
                        if (rows == 67 && groups == 3) {
                            // A NaN quotient: the fast path declines and the generic path decides.
                            x[3][1] = std::numeric_limits<float>::quiet_NaN();
                            EXPECT_FALSE(fake_quantize_fast(a, x, qp).defined()) << what;
                            EXPECT_TRUE(at::isnan(fake_quantize(a, x, qp)[3][1]).item<bool>()) << what;
                            continue;
                        }
                        // Infinities and signed zeros take the fast path like any value.
                        if (rows == 67) {
                            x[1][0] = std::numeric_limits<float>::infinity();
                            x[2][0] = -std::numeric_limits<float>::infinity();
                            x[4][0] = -0.0f;
                        }
                        expect_same(a, x, qp, what);
                    }
    }
}

// The observers' one-pass min/max (quant/minmax_fast.h) against at::amin / at::amax over dims
// {0, -1}: the same values and dtype for weight layouts (group: [1, N, g]; channel:
// [1, R, 1, C]), with NaN, infinities and signed zeros in the data; non-covered forms decline.
TEST(MinMaxFast, MatchesAtenReductions) {
    for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kHalf}) {
        for (const std::vector<int64_t> &shape : std::vector<std::vector<int64_t>>{{1, 37, 16}, {1, 9, 1, 50}, {1, 3, 1}}) {
            at::Tensor x = at::randn(shape).mul_(3);
            at::Tensor flat = x.view({-1});
            const int64_t n = flat.numel();
            if (n > 40) {
                flat[3] = std::numeric_limits<float>::quiet_NaN();
                flat[20] = std::numeric_limits<float>::infinity();
                flat[33] = -std::numeric_limits<float>::infinity();
            }
            x = x.to(t);
            at::Tensor mn, mx;
            ASSERT_TRUE(minmax_last_dim_fast(x, mn, mx));
            const at::Tensor rmn = at::amin(x, {0, -1}), rmx = at::amax(x, {0, -1});
            ASSERT_EQ(mn.scalar_type(), t);
            ASSERT_EQ(mn.sizes(), rmn.sizes());
            ASSERT_EQ(mx.sizes(), rmx.sizes());
            const at::Tensor a = mn.to(at::kFloat), b = rmn.to(at::kFloat), c = mx.to(at::kFloat), d = rmx.to(at::kFloat);
            EXPECT_TRUE(at::equal(a.isnan(), b.isnan()));
            EXPECT_TRUE(at::equal(c.isnan(), d.isnan()));
            EXPECT_TRUE(at::equal(a.nan_to_num(0), b.nan_to_num(0))) << shape.size();
            EXPECT_TRUE(at::equal(c.nan_to_num(0), d.nan_to_num(0))) << shape.size();
        }
    }
    // Rows of signed zeros: a zero either way.
    at::Tensor z = at::zeros({1, 2, 4});
    z[0][0][1] = -0.0;
    at::Tensor mn, mx;
    ASSERT_TRUE(minmax_last_dim_fast(z, mn, mx));
    EXPECT_EQ(mn.abs().sum().item<float>(), 0.0f);
    EXPECT_EQ(mx.abs().sum().item<float>(), 0.0f);
    // Declined: batch dimension, strided, integer, empty.
    at::Tensor a, b;
    EXPECT_FALSE(minmax_last_dim_fast(at::randn({2, 3, 4}), a, b));
    EXPECT_FALSE(minmax_last_dim_fast(at::randn({1, 4, 6}).transpose(1, 2), a, b));
    EXPECT_FALSE(minmax_last_dim_fast(at::ones({1, 3, 4}, at::kInt), a, b));
    EXPECT_FALSE(minmax_last_dim_fast(at::randn({1, 0, 4}), a, b));
    EXPECT_FALSE(a.defined());
}

// Groups whose length is a multiple of 16, in 16-bit floats, go sixteen at a time through the
// AVX2 reduction where the CPU has it (the rest of the groups through the portable loop): the same
// values as ATen's for groups of 16, 32, 48 and 128, with NaNs of either sign (by their bits: a
// float NaN converts to a positive one), infinities, signed zeros and groups of one value.
TEST(MinMaxFast, GroupsOf16BitFloatsMatchAten) {
    for (at::ScalarType t : {at::kBFloat16, at::kHalf}) {
        for (int64_t k : {16, 32, 48, 128}) {
            const int64_t groups = 83; // five tiles of sixteen and three left over
            at::Tensor x = (at::randn({1, groups, k}) * 5).to(t);
            at::Tensor bits = x.view(at::kShort).view({-1});
            const int16_t pos_nan = t == at::kBFloat16 ? 0x7FC1 : 0x7E01;
            const int16_t neg_nan = static_cast<int16_t>(t == at::kBFloat16 ? 0xFFC1 : 0xFE01);
            bits[5 * k + 3] = pos_nan;                // group 5
            bits[17 * k] = neg_nan;                   // group 17
            bits[40 * k + k - 1] = neg_nan;           // group 40, with a positive NaN too
            bits[40 * k + 1] = pos_nan;
            x.index_put_({0, 60}, std::numeric_limits<float>::infinity());
            x.index_put_({0, 61, 0}, -std::numeric_limits<float>::infinity());
            x.index_put_({0, 62}, -0.0);
            x.index_put_({0, 63}, 0.0);
            x.index_put_({0, 63, 7}, -0.0);
            x.index_put_({0, 64}, 1.5); // one value throughout
            x.index_put_({0, 82, 2}, std::numeric_limits<float>::quiet_NaN()); // a leftover group
            at::Tensor mn, mx;
            ASSERT_TRUE(minmax_last_dim_fast(x, mn, mx));
            const at::Tensor rmn = at::amin(x, {0, -1}).to(at::kFloat), rmx = at::amax(x, {0, -1}).to(at::kFloat);
            const at::Tensor a = mn.to(at::kFloat), c = mx.to(at::kFloat);
            const std::string what = std::string(c10::toString(t)) + " k " + std::to_string(k);
            EXPECT_TRUE(at::equal(a.isnan(), rmn.isnan())) << what;
            EXPECT_TRUE(at::equal(c.isnan(), rmx.isnan())) << what;
            EXPECT_EQ(a.isnan().sum().item<int64_t>(), 4) << what;
            EXPECT_TRUE(at::equal(a.nan_to_num(0), rmn.nan_to_num(0))) << what;
            EXPECT_TRUE(at::equal(c.nan_to_num(0), rmx.nan_to_num(0))) << what;
            EXPECT_EQ(a[60].item<float>(), std::numeric_limits<float>::infinity()) << what;
            EXPECT_EQ(a[62].item<float>(), 0.0f) << what;
            EXPECT_EQ(c[64].item<float>(), 1.5f) << what;
            // The serial form the exporter calls gives the same.
            at::Tensor smn = at::empty({groups}, x.options()), smx = at::empty({groups}, x.options());
            if (t == at::kBFloat16)
                minmax_rows_serial(x.data_ptr<c10::BFloat16>(), groups, k, smn.data_ptr<c10::BFloat16>(),
                                   smx.data_ptr<c10::BFloat16>());
            else
                minmax_rows_serial(x.data_ptr<c10::Half>(), groups, k, smn.data_ptr<c10::Half>(),
                                   smx.data_ptr<c10::Half>());
            EXPECT_TRUE(at::equal(smn.view(at::kShort), mn.view(at::kShort))) << what;
            EXPECT_TRUE(at::equal(smx.view(at::kShort), mx.view(at::kShort))) << what;
        }
    }
}

// Block minima and maxima (minmax_blocks_fast, and the serial form the exporter calls on a band
// of rows) against at::amin / at::amax over flatten_for_calibration's block layout (the weight
// zero-padded to whole blocks, transposed): blocks cut short at the bottom and the right count the
// padding's zeros, one-row and one-column blocks, NaN, infinities and signed zeros; a block strategy
// observer gives the layout's qparams.
TEST(MinMaxFast, BlocksMatchTheBlockLayout) {
    struct shape {
        int64_t rows, cols, bh, bw;
    };
    const shape shapes[] = {{64, 128, 16, 32}, {37, 100, 16, 32}, {5, 7, 8, 8}, {33, 65, 1, 1}, {130, 256, 128, 128}};
    int compared = 0;
    for (at::ScalarType t : {at::kFloat, at::kBFloat16, at::kHalf}) {
        for (const shape &sh : shapes) {
            for (bool special : {false, true}) {
                // All-positive rows make the padding's zero the minimum of a cut-short block.
                at::Tensor x = at::randn({sh.rows, sh.cols}).abs_().add_(0.5);
                x.slice(0, 0, sh.rows / 2).neg_();
                if (special) {
                    at::Tensor flat = x.view({-1});
                    flat[3] = std::numeric_limits<float>::quiet_NaN();
                    flat[flat.numel() - 1] = std::numeric_limits<float>::infinity();
                    flat[flat.numel() / 2] = -std::numeric_limits<float>::infinity();
                    x.slice(0, 0, std::min<int64_t>(sh.rows, sh.bh)).slice(1, sh.cols - 1, sh.cols).fill_(-0.0);
                }
                x = x.to(t);
                quant_args a;
                a.num_bits = 8;
                a.type = quant_type::float_;
                a.strategy = quant_strategy::block;
                a.block_structure = std::array<int, 2>{static_cast<int>(sh.bh), static_cast<int>(sh.bw)};
                a = make_args(a);
                const at::Tensor flat = flatten_for_calibration(a, x, observed_role::weight);
                const at::Tensor rmn = at::amin(flat, {0, -1}), rmx = at::amax(flat, {0, -1});
                at::Tensor mn, mx;
                ASSERT_TRUE(minmax_blocks_fast(x, sh.bh, sh.bw, mn, mx));
                const std::string what = std::string(c10::toString(t)) + " " + std::to_string(sh.rows) + "x" +
                                         std::to_string(sh.cols) + " blocks " + std::to_string(sh.bh) + "x" +
                                         std::to_string(sh.bw) + (special ? " special" : "");
                ASSERT_EQ(mn.scalar_type(), t) << what;
                ASSERT_EQ(mn.sizes(), rmn.sizes()) << what;
                auto same = [&](const at::Tensor &u, const at::Tensor &v) {
                    const at::Tensor a = u.to(at::kFloat), b = v.to(at::kFloat);
                    return at::equal(a.isnan(), b.isnan()) && at::equal(a.nan_to_num(0), b.nan_to_num(0));
                };
                EXPECT_TRUE(same(mn, rmn)) << what;
                EXPECT_TRUE(same(mx, rmx)) << what;
                if (t != at::kHalf) {
                    // The serial form: the same, into caller-owned arrays.
                    at::Tensor smn = at::empty_like(mn), smx = at::empty_like(mx);
                    if (t == at::kFloat)
                        minmax_blocks_serial(x.data_ptr<float>(), sh.rows, sh.cols, sh.bh, sh.bw, smn.data_ptr<float>(),
                                             smx.data_ptr<float>());
                    else
                        minmax_blocks_serial(x.data_ptr<c10::BFloat16>(), sh.rows, sh.cols, sh.bh, sh.bw,
                                             smn.data_ptr<c10::BFloat16>(), smx.data_ptr<c10::BFloat16>());
                    EXPECT_TRUE(same(smn, rmn)) << what << " serial";
                    EXPECT_TRUE(same(smx, rmx)) << what << " serial";
                }
                if (!special) {
                    // The observer takes this path: its qparams are those of the layout's range.
                    const qparams qp = qparams_observe(a, x);
                    const qparams expect = qparams_from_minmax(a, rmn, rmx);
                    EXPECT_TRUE(at::equal(qp.scale, expect.scale)) << what;
                }
                ++compared;
            }
        }
    }
    EXPECT_EQ(compared, 3 * 5 * 2);
    at::Tensor a, b;
    EXPECT_FALSE(minmax_blocks_fast(at::randn({4, 6}).t(), 2, 2, a, b));
    EXPECT_FALSE(minmax_blocks_fast(at::ones({4, 4}, at::kInt), 2, 2, a, b));
    EXPECT_FALSE(minmax_blocks_fast(at::randn({0, 4}), 2, 2, a, b));
    EXPECT_FALSE(minmax_blocks_fast(at::randn({2, 3, 4}), 2, 2, a, b));
    EXPECT_FALSE(a.defined());
}

// Several weights observed as one (qparams_observe_joined, the host's weight_qparams_store): the
// qparams of one fresh observer given their rows concatenated, cut back per weight, bit for bit.
// NVFP4 partner sets (q/k/v shapes) in every float dtype with zero and -0 groups and groups on
// the FP8 scale grid's rounding points; rows through a reader (the weight's memory poisoned) or a
// declining one; a single INT group weight; and an MSE observer, which concatenates instead.
TEST(ObserveJoined, MatchesObservingTheConcatenation) {
    const quant_args nvfp4 = preset_scheme("NVFP4A16", {"Linear"}).weights.value();
    ASSERT_EQ(nvfp4.strategy, quant_strategy::tensor_group);
    quant_args mse = nvfp4;
    mse.observer = "memoryless_mse";
    mse = make_args(mse);
    quant_args int4;
    int4.num_bits = 4;
    int4.symmetric = false;
    int4.strategy = quant_strategy::group;
    int4.group_size = 32;
    int4 = make_args(int4);
    int compared = 0;
    for (at::ScalarType t : {at::kBFloat16, at::kFloat, at::kHalf}) {
        for (const quant_args *a : std::vector<const quant_args *>{&nvfp4, &mse, &int4}) {
            const bool single = a == &int4;
            std::vector<at::Tensor> ws;
            for (int64_t rows : single ? std::vector<int64_t>{70} : std::vector<int64_t>{96, 32, 32}) {
                at::Tensor w = at::randn({rows, 128}) * at::pow(10.0, at::linspace(-3, 3, rows).unsqueeze(1));
                w.index_put_({1, at::indexing::Slice(0, 16)}, 0.0);
                w.index_put_({2, at::indexing::Slice(16, 32)}, -0.0);
                ws.push_back(w.to(t));
            }
            observer obs(*a, observed_role::weight);
            obs.observe(ws.size() == 1 ? ws.front() : at::cat(ws, 0));
            const qparams expect = obs.get_qparams();
            std::vector<at::Tensor> copies, poisoned;
            for (const auto &w : ws) {
                copies.push_back(w.clone());
                poisoned.push_back(at::full_like(w, 3e4));
            }
            std::vector<row_reader> from_copies, declining;
            int calls = 0;
            for (const auto &c : copies) {
                from_copies.push_back([&calls, c](int64_t r0, int64_t r1, void *dst) {
                    ++calls;
                    std::memcpy(dst, static_cast<const char *>(c.data_ptr()) + r0 * c.size(1) * c.element_size(),
                                static_cast<size_t>((r1 - r0) * c.size(1) * c.element_size()));
                    return true;
                });
                declining.push_back([](int64_t, int64_t, void *) { return false; });
            }
            const std::string what = std::string(c10::toString(t)) + (a == &mse ? " mse" : single ? " int4" : " nvfp4");
            for (int route = 0; route < 3; ++route) {
                const bool mse_route = a == &mse;
                if (route == 1 && mse_route) continue; // MSE concatenates the weights' memory
                const std::vector<qparams> got = route == 0   ? qparams_observe_joined(*a, ws)
                                                 : route == 1 ? qparams_observe_joined(*a, poisoned, from_copies)
                                                              : qparams_observe_joined(*a, ws, declining);
                ASSERT_EQ(got.size(), ws.size()) << what;
                int64_t row = 0;
                for (size_t i = 0; i < ws.size(); ++i) {
                    const int64_t rows = ws[i].size(0);
                    const std::string which = what + " route " + std::to_string(route) + " weight " + std::to_string(i);
                    const at::Tensor es = single ? expect.scale : expect.scale.slice(0, row, row + rows);
                    ASSERT_EQ(got[i].scale.scalar_type(), es.scalar_type()) << which;
                    EXPECT_TRUE(at::equal(got[i].scale, es)) << which;
                    if (expect.zero_point.defined()) {
                        const at::Tensor ez = single ? expect.zero_point : expect.zero_point.slice(0, row, row + rows);
                        EXPECT_TRUE(at::equal(got[i].zero_point, ez)) << which;
                    }
                    EXPECT_EQ(got[i].global_scale.defined(), expect.global_scale.defined()) << which;
                    if (expect.global_scale.defined())
                        EXPECT_TRUE(at::equal(got[i].global_scale, expect.global_scale)) << which;
                    row += rows;
                }
                ++compared;
            }
            if (a != &mse) EXPECT_GT(calls, 0) << what << ": the reader served the rows";
        }
    }
    EXPECT_EQ(compared, 3 * (3 + 2 + 3));
    // Several weights whose scale is not per row cannot be cut back.
    quant_args tensor;
    tensor.num_bits = 8;
    tensor.strategy = quant_strategy::tensor;
    tensor = make_args(tensor);
    EXPECT_THROW(qparams_observe_joined(tensor, {at::randn({4, 8}), at::randn({4, 8})}), std::exception);
}

// NVFP4's local scales from group minima and maxima (qparams_from_minmax's FP4 loop) against the
// ATen chain, reached with strided minima and maxima: float32 and bfloat16 groups, all-zero and
// -0 groups (scale eps), global scales that push products past 448 (saturation) and into FP8's
// subnormals and zero; the zero point's dtype and values too.
TEST(NvFp4QparamsFast, MatchesGenericPathBitForBit) {
    const quant_args a = preset_scheme("NVFP4A16", {"Linear"}).weights.value();
    int cases = 0;
    for (at::ScalarType t : {at::kFloat, at::kBFloat16}) {
        at::Tensor x = (at::randn({67, 8, 16}) * at::exp(at::randn({67, 8, 1}) * 4)).to(t);
        x[0].zero_();
        x[1][2].fill_(-0.0);
        x[2][3].fill_(-1.0);
        // Groups whose absmax / 6 is an FP8 midpoint (1.0625 between 1 and 1.125, and so on): with
        // a global scale of 1 the division's exactness decides the tie.
        for (int k = 0; k < 8; ++k) x[3 + k][0][5] = 6.0 * (1.0 + (2 * k + 1) / 16.0) * std::ldexp(1.0, k - 3);
        const at::Tensor mn = at::amin(x, {-1}), mx = at::amax(x, {-1});
        const at::Tensor natural = global_scale_from_minmax(mn.min().reshape({1}), mx.max().reshape({1}));
        for (float g : {natural.item<float>(), 1.0f, 1e4f, 1e-6f, 3.7f}) {
            const at::Tensor gs = at::full({1}, g, at::kFloat);
            qparams fast;
            ASSERT_TRUE(qparams_from_minmax_fp4(a, mn, mx, gs, fast));
            // The generic chain: the same values, strided.
            const at::Tensor smn = at::stack({mn, mn}, -1).select(-1, 0), smx = at::stack({mx, mx}, -1).select(-1, 0);
            ASSERT_FALSE(smn.is_contiguous());
            qparams unused;
            EXPECT_FALSE(qparams_from_minmax_fp4(a, smn, smx, gs, unused));
            const qparams generic = qparams_from_minmax(a, smn, smx, &gs);
            const std::string what = std::string(c10::toString(t)) + " gs " + std::to_string(g);
            ASSERT_EQ(fast.scale.scalar_type(), generic.scale.scalar_type()) << what;
            EXPECT_TRUE(at::equal(fast.scale, generic.scale)) << what;
            ASSERT_EQ(fast.zero_point.scalar_type(), generic.zero_point.scalar_type()) << what;
            EXPECT_TRUE(at::equal(fast.zero_point, generic.zero_point)) << what;
            EXPECT_TRUE(at::equal(fast.global_scale, gs)) << what;
            EXPECT_TRUE(at::equal(qparams_from_minmax(a, mn, mx, &gs).scale, generic.scale)) << what;
            ++cases;
        }
    }
    EXPECT_EQ(cases, 10);
    // Declined: NaN or infinite ranges, INT args, a 0-dim global scale (it would not promote).
    at::Tensor mn = -at::rand({4, 2}), mx = at::rand({4, 2});
    const at::Tensor gs = at::ones({1});
    qparams q;
    mx[1][1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(qparams_from_minmax_fp4(a, mn, mx, gs, q));
    mx[1][1] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(qparams_from_minmax_fp4(a, mn, mx, gs, q));
    mx[1][1] = 1.0f;
    EXPECT_TRUE(qparams_from_minmax_fp4(a, mn, mx, gs, q));
    EXPECT_FALSE(qparams_from_minmax_fp4(a, mn, mx, gs.reshape({}), q));
    EXPECT_FALSE(qparams_from_minmax_fp4(preset_scheme("W4A16", {"Linear"}).weights.value(), mn, mx, gs, q));
}

// A tensor_group observer takes the whole tensor's range from its groups' minima and maxima: the
// same global scale as from the values, a NaN included.
TEST(NvFp4QparamsFast, GlobalScaleFromGroupsEqualsFromValues) {
    const quant_args a = preset_scheme("NVFP4A16", {"Linear"}).weights.value();
    for (at::ScalarType t : {at::kFloat, at::kBFloat16}) {
        for (bool with_nan : {false, true}) {
            at::Tensor x = (at::randn({48, 64}) * 5).to(t);
            if (with_nan) x[7][9] = std::numeric_limits<float>::quiet_NaN();
            observer obs(a);
            obs.observe(x);
            const at::Tensor expected = global_scale_from_minmax(x.min().reshape({1}), x.max().reshape({1}));
            EXPECT_TRUE(at::equal(obs.global_scale().isnan(), expected.isnan()));
            EXPECT_TRUE(at::equal(obs.global_scale().nan_to_num(0), expected.nan_to_num(0)))
                << c10::toString(t) << " nan " << with_nan;
        }
    }
}

// MX scales (E8M0) from group minima and maxima in one loop against the ATen chain, reached with
// strided minima and maxima: MXFP4 and MXFP8, float32 and bfloat16, zero groups, absmax on both
// sides of the power-of-two rounding point (mantissa 1.75), tiny ones (clamped to E8M0 0, the
// subnormal 2^-127) and ones near the dtype's largest value (rounded up to infinity).
TEST(MxQparamsFast, MatchesGenericPathBitForBit) {
    for (const char *preset : {"MXFP4A16", "MXFP8A16"}) {
        const quant_args a = preset_scheme(preset, {"Linear"}).weights.value();
        for (at::ScalarType t : {at::kFloat, at::kBFloat16}) {
            at::Tensor x = (at::randn({40, 8, 32}) * at::exp(at::randn({40, 8, 1}) * 6)).to(t);
            x[0].zero_();
            x[1][0].fill_(-0.0);
            for (int k = 0; k < 8; ++k) {
                x[2][k][0] = 1.75 * std::ldexp(1.0, 3 * k - 12);
                x[3][k][0] = -std::nextafter(1.75f, 0.0f) * std::ldexp(1.0f, 3 * k - 12);
                x[4][k].fill_(std::ldexp(1.0, -120 - k)); // tiny: E8M0 clamps at 0
                x[5][k][3] = (k % 2 ? -1.0 : 1.0) * 3.3e38; // rounds up past the largest finite value
            }
            x[6][0][0] = 1e-40; // a float32 subnormal (zero in bf16)
            const at::Tensor mn = at::amin(x, {-1}), mx = at::amax(x, {-1});
            qparams fast;
            ASSERT_TRUE(qparams_from_minmax_mx(a, mn, mx, fast));
            const at::Tensor smn = at::stack({mn, mn}, -1).select(-1, 0), smx = at::stack({mx, mx}, -1).select(-1, 0);
            qparams unused;
            EXPECT_FALSE(qparams_from_minmax_mx(a, smn, smx, unused));
            const qparams generic = qparams_from_minmax(a, smn, smx);
            const std::string what = std::string(preset) + " " + c10::toString(t);
            ASSERT_EQ(fast.scale.scalar_type(), generic.scale.scalar_type()) << what;
            const at::Tensor fb = fast.scale.to(at::kFloat).view(at::kInt);
            const at::Tensor gb = generic.scale.to(at::kFloat).view(at::kInt);
            EXPECT_TRUE(at::equal(fb, gb)) << what << ": " << (fb != gb).sum().item<int64_t>() << " differ";
            EXPECT_TRUE(at::equal(fast.zero_point, generic.zero_point)) << what;
            EXPECT_EQ(fast.zero_point.scalar_type(), generic.zero_point.scalar_type()) << what;
            EXPECT_TRUE(at::equal(qparams_from_minmax(a, mn, mx).scale.to(at::kFloat).view(at::kInt), gb)) << what;
        }
    }
    const quant_args a = preset_scheme("MXFP4A16", {"Linear"}).weights.value();
    at::Tensor mn = -at::rand({4, 2}), mx = at::rand({4, 2});
    qparams q;
    mx[1][1] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(qparams_from_minmax_mx(a, mn, mx, q));
    mx[1][1] = 1.0f;
    EXPECT_TRUE(qparams_from_minmax_mx(a, mn, mx, q));
    EXPECT_FALSE(qparams_from_minmax_mx(preset_scheme("NVFP4A16", {"Linear"}).weights.value(), mn, mx, q));
}
