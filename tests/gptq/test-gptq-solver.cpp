// The GPTQ solve (plugins/gptq/gptq_solver.cpp): the plugin's factor against llm-compressor's
// op sequence, the failure fallback, and the native sweep against the op-by-op reference.
// Built with the plugin's core library (plugins/gptq/CMakeLists.txt).
#include "gptq_solver.h"

#include <ATen/Parallel.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace {

// A realistic Hessian: 2·XᵀX / n over tokens with uneven channel scales, a few dead channels.
at::Tensor make_hessian(int64_t c, int64_t tokens, int dead) {
    const at::Tensor channel_scale = at::exp(0.5 * at::randn({c}));
    at::Tensor X = at::randn({tokens, c}) * channel_scale;
    for (int i = 0; i < dead; ++i) X.select(1, (i * 37 + 5) % c).zero_();
    return X.t().mm(X) * (2.0 / static_cast<double>(tokens));
}

double rel_diff(const at::Tensor &a, const at::Tensor &b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// Round-to-grid per row, as a stand-in for the host's fake_quantize.
at::Tensor round_column(const at::Tensor &col, const at::Tensor &scale, int64_t row_begin) {
    const at::Tensor s = scale.slice(0, row_begin, row_begin + col.size(0)).unsqueeze(1);
    return at::round(at::clamp(col / s, -8, 7)) * s;
}

} // namespace

TEST(GptqSolver, ReversedCholeskyMatchesInverseCholesky) {
    at::manual_seed(7);
    for (bool act_order : {false, true}) {
        const at::Tensor H = make_hessian(384, 1024, 3);
        const auto a = llmc_gptq::factor_hessian(H.clone(), act_order, 0.01, llmc_gptq::factor_method::reversed_cholesky);
        const auto b = llmc_gptq::factor_hessian(H.clone(), act_order, 0.01, llmc_gptq::factor_method::inverse_cholesky);
        ASSERT_FALSE(a.fell_back);
        ASSERT_FALSE(b.fell_back);
        EXPECT_TRUE(at::equal(a.dead, b.dead));
        if (act_order) EXPECT_TRUE(at::equal(a.perm, b.perm));
        EXPECT_LT(rel_diff(a.hinv, b.hinv), 1e-4);
        EXPECT_EQ(a.hinv.tril(-1).abs().max().item<float>(), 0.0f); // upper triangular
        // Both are U with UᵀU = H⁻¹, i.e. U·H·Uᵀ = I (H damped and permuted as the factor saw it).
        at::Tensor Hd = act_order ? H.index_select(0, a.perm).index_select(1, a.perm) : H.clone();
        Hd.diagonal().masked_fill_(a.dead, 1.0);
        Hd.diagonal().add_(0.01 * Hd.diagonal().mean());
        const at::Tensor I = at::eye(384);
        EXPECT_LT((a.hinv.to(at::kDouble).mm(Hd.to(at::kDouble)).mm(a.hinv.t().to(at::kDouble)) - I.to(at::kDouble))
                      .abs()
                      .max()
                      .item<double>(),
                  1e-3);
    }
}

TEST(GptqSolver, FailedFactorizationFallsBackToIdentity) {
    for (auto method : {llmc_gptq::factor_method::reversed_cholesky, llmc_gptq::factor_method::inverse_cholesky}) {
        at::Tensor H = at::eye(16);
        H[3][3] = -5.0; // not positive definite even after damping
        auto f = llmc_gptq::factor_hessian(H, false, 0.01, method);
        EXPECT_TRUE(f.fell_back);
        EXPECT_TRUE(at::equal(f.hinv, at::eye(16)));
        at::Tensor N = at::eye(16);
        N[2][5] = N[5][2] = std::numeric_limits<float>::quiet_NaN();
        f = llmc_gptq::factor_hessian(N, true, 0.01, method);
        EXPECT_TRUE(f.fell_back);
        EXPECT_TRUE(at::equal(f.hinv, at::eye(16)));
    }
}

TEST(GptqSolver, NativeSweepMatchesReferenceBitForBit) {
    at::manual_seed(11);
    const int64_t rows = 300, cols = 320; // not multiples of the block or the task size
    const at::Tensor H = make_hessian(cols, 640, 2);
    const at::Tensor scale = at::rand({rows}) * 0.01 + 0.002;
    const llmc_gptq::column_fn fq = [&](const at::Tensor &col, int64_t, int64_t rb) {
        return round_column(col, scale, rb);
    };
    const int threads = at::get_num_threads();
    at::set_num_threads(2); // both task layouts need more than one thread
    for (auto method : {llmc_gptq::factor_method::reversed_cholesky, llmc_gptq::factor_method::inverse_cholesky}) {
        const auto f = llmc_gptq::factor_hessian(H.clone(), true, 0.01, method);
        at::Tensor W0 = llmc_gptq::to_sweep_order(at::randn({rows, cols}) * 0.02, f);
        llmc_gptq::zero_dead(W0, f);
        at::Tensor Wr = W0.clone();
        const double loss_ref = llmc_gptq::sweep_reference(Wr, f.hinv, fq, 64);
        for (bool whole_rows : {true, false}) {
            at::Tensor W = W0.clone();
            llmc_gptq::sweep_options opt;
            opt.block_size = 64;
            opt.rows_per_task = 70;
            opt.whole_rows = whole_rows;
            const double loss = llmc_gptq::sweep(W, f.hinv, fq, opt);
            EXPECT_TRUE(at::equal(W, Wr)) << "whole_rows " << whole_rows;
            EXPECT_NEAR(loss, loss_ref, 1e-6 * std::abs(loss_ref)); // the reference sums in float
        }
    }
    at::set_num_threads(threads);
}

// The plugin's route: V = U⁻¹ from one Cholesky (cholesky_only), swept by sweep_inverse_factor.
// V is upper and inverts the reference's U; the sweep is the same algorithm with other rounding,
// so its result matches the reference to rounding: a handful of values on the neighbouring
// level, the loss equal to float precision. Sizes are not multiples of the block (48: a partial
// last block) or the task size.
TEST(GptqSolver, InverseFactorSweepMatchesReferenceToRounding) {
    at::manual_seed(12);
    const int64_t rows = 300, cols = 320;
    const at::Tensor H = make_hessian(cols, 640, 2);
    const at::Tensor scale = at::rand({rows}) * 0.01 + 0.002;
    const llmc_gptq::column_fn fq = [&](const at::Tensor &col, int64_t, int64_t rb) {
        return round_column(col, scale, rb);
    };
    const int threads = at::get_num_threads();
    at::set_num_threads(2);
    for (bool act_order : {false, true}) {
        const auto ref = llmc_gptq::factor_hessian(H.clone(), act_order, 0.01, llmc_gptq::factor_method::inverse_cholesky);
        const auto fv =
            llmc_gptq::factor_hessian(H.clone(), act_order, 0.01, llmc_gptq::factor_method::cholesky_only, 48);
        ASSERT_FALSE(fv.fell_back);
        ASSERT_FALSE(fv.hinv.defined());
        ASSERT_EQ(fv.blocked, 48);
        const at::Tensor &V = fv.hinv_inverse;
        EXPECT_EQ(V.tril(-1).abs().max().item<float>(), 0.0f); // upper triangular
        EXPECT_TRUE(at::equal(fv.dead, ref.dead));
        if (act_order) EXPECT_TRUE(at::equal(fv.perm, ref.perm));
        // Diagonal blocks: V_BB = U_BB⁻¹. Above them: V[:B, B] · V_BB⁻¹ = -U[:B, :B]⁻¹ · U[:B, B]
        // (from U·V = I), i.e. U[:B, :B] · V'[:B, B] = -U[:B, B].
        const at::Tensor Ud = ref.hinv.to(at::kDouble), Vd = V.to(at::kDouble);
        for (int64_t i1 = 0; i1 < cols; i1 += 48) {
            const int64_t i2 = std::min<int64_t>(i1 + 48, cols);
            const at::Tensor Vbb = Vd.slice(0, i1, i2).slice(1, i1, i2), Ubb = Ud.slice(0, i1, i2).slice(1, i1, i2);
            EXPECT_LT((Vbb.mm(Ubb) - at::eye(i2 - i1, at::kDouble)).abs().max().item<double>(), 1e-3);
            if (i1 > 0) {
                const at::Tensor lhs = Ud.slice(0, 0, i1).slice(1, 0, i1).mm(Vd.slice(0, 0, i1).slice(1, i1, i2));
                EXPECT_LT((lhs + Ud.slice(0, 0, i1).slice(1, i1, i2)).abs().max().item<double>(),
                          1e-3 * Ud.abs().max().item<double>());
            }
        }

        at::Tensor W0 = llmc_gptq::to_sweep_order(at::randn({rows, cols}) * 0.02, ref);
        llmc_gptq::zero_dead(W0, ref);
        at::Tensor Wr = W0.clone(), W = W0.clone();
        const double loss_ref = llmc_gptq::sweep_reference(Wr, ref.hinv, fq, 48);
        llmc_gptq::sweep_options opt;
        opt.block_size = 48;
        opt.rows_per_task = 70;
        const double loss = llmc_gptq::sweep_inverse_factor(W, fv, fq, opt);
        const double differ = (W != Wr).sum().item<double>() / static_cast<double>(W.numel());
        EXPECT_LT(differ, 1e-3) << "act_order " << act_order;
        // A differing value is one level away: at most one step of its row's scale.
        EXPECT_TRUE(((W - Wr).abs() <= scale.unsqueeze(1) * 1.001).all().item<bool>());
        EXPECT_NEAR(loss, loss_ref, 1e-4 * std::abs(loss_ref));
        // Every value is on its row's grid (what fq returns), and dead columns stay zero.
        EXPECT_TRUE(at::allclose(W, at::round(W / scale.unsqueeze(1)) * scale.unsqueeze(1), 0, 1e-6));
        EXPECT_EQ(W.index_select(1, at::nonzero(fv.dead).flatten()).abs().sum().item<float>(), 0.0f);
    }
    at::set_num_threads(threads);
}

// A failed factorization gives V = I, and the sweep from it is round-to-nearest, as from U = I.
TEST(GptqSolver, InverseFactorFallbackIsRoundToNearest) {
    at::Tensor H = at::eye(16);
    H[3][3] = -5.0;
    const auto f = llmc_gptq::factor_hessian(H, false, 0.01, llmc_gptq::factor_method::cholesky_only);
    EXPECT_TRUE(f.fell_back);
    EXPECT_TRUE(at::equal(f.hinv_inverse, at::eye(16)));
    const at::Tensor scale = at::full({5}, 0.01);
    const llmc_gptq::column_fn fq = [&](const at::Tensor &col, int64_t, int64_t rb) {
        return round_column(col, scale, rb);
    };
    at::Tensor W = at::randn({5, 16}) * 0.02, Wr = W.clone();
    llmc_gptq::sweep_inverse_factor(W, f, fq);
    // A sweep with another block size than the factor's is refused.
    llmc_gptq::sweep_options other;
    other.block_size = 64;
    at::Tensor W2 = Wr.clone();
    EXPECT_THROW(llmc_gptq::sweep_inverse_factor(W2, f, fq, other), c10::Error);
    EXPECT_TRUE(at::equal(W, at::round(at::clamp(Wr / 0.01, -8, 7)) * 0.01));
}
