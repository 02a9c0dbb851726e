// GPTQ's solve, exactly as llm-compressor's quantize_weight computes it (reference/algorithms.md
// section 2.2), in a form the plugin and bench/gptq_bench.cpp share. ATen only: the rounding of
// each column is a callback (the plugin passes the host's fake_quantize).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace llmc_gptq {

// The factor the column sweep uses, which depends on the Hessian alone: modules that share a
// Hessian (q/k/v, gate/up) share it too.
struct hessian_factor {
    at::Tensor perm; // int64 [c]: columns by descending diag(H) (act-order); undefined otherwise
    at::Tensor dead; // bool [c], sweep order: diag(H) == 0 (those weight columns are zeroed)
    at::Tensor hinv; // fp32 [c, c], sweep order: upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU)
    // factor_method::cholesky_only gives, instead of hinv, V = U⁻¹ (fp32 [c, c], upper) blocked
    // for the sweep: its diagonal blocks V_BB as they are, the blocks above them multiplied by
    // U_BB = V_BB⁻¹ (V' = V · blockdiag(U_BB), see sweep_inverse_factor), for blocks of
    // `blocked` columns.
    at::Tensor hinv_inverse;
    int64_t blocked = 0;
    bool fell_back = false; // factorization failed: U = I, i.e. round-to-nearest
};

// How U is computed from the damped H. Both give the same matrix; the rounding differs.
enum class factor_method {
    // U = J·inv(cholesky(J·H·J))·J, J reversing the column order: one Cholesky and one
    // triangular inverse, 2n³/3 flops (LAPACK strtri when the build found it).
    reversed_cholesky,
    // cholesky -> cholesky_inverse -> upper cholesky, as llm-compressor writes it: 4n³/3 flops.
    inverse_cholesky,
    // V = U⁻¹ = J·cholesky(J·H·J)·J only (n³/3 flops), blocked for sweep_inverse_factor.
    cholesky_only,
};

// Steps 3, 7 and 8: permute (stable descending sort of the diagonal), dead columns get
// H_ii = 1, damping dampening_frac · mean(diag H) on the diagonal, then the upper Cholesky
// factor of H⁻¹. H (fp32 [c, c], the mean) is consumed. A failed or non-finite factorization
// gives fell_back (U = I).
// block_size: cholesky_only's blocks (the sweep's block_size).
hessian_factor factor_hessian(at::Tensor H, bool act_order, double dampening_frac,
                              factor_method method = factor_method::reversed_cholesky, int64_t block_size = 128);
// Whether reversed_cholesky uses LAPACK's strtri (else a triangular solve against I, n³ flops).
bool have_lapack_trtri();

// Rounds column j (sweep order) for rows [row_begin, row_begin + rows): `column` is fp32
// [rows, 1], borrowed for the call. Returns the fake-quantized values ([rows, 1] or [rows], any
// float dtype). Called from several threads at once for disjoint rows of the same column.
using column_fn = std::function<at::Tensor(const at::Tensor &column, int64_t j, int64_t row_begin)>;

struct sweep_options {
    int64_t block_size = 128;
    // Row tasks run in parallel (rows are independent given the factor); 0 = one per thread.
    int64_t rows_per_task = 0;
    // Each task sweeps all blocks for its rows, with single-threaded GEMMs (OpenBLAS only);
    // false: tasks per block, then one GEMM on all threads. Same results either way.
    bool whole_rows = true;
};

// Step 9: W (fp32 [r, c] contiguous, sweep order, dead columns zeroed) is replaced by its
// quantized values. Returns the loss Σ (w - q)² / d² / 2. Rows are split into tasks that run in
// parallel; a block's columns are processed in native loops (the in-block updates touch only
// the task's rows) and the lazy update of the later columns is a GEMM per block, as in the
// reference (see sweep_options::whole_rows). Bit for bit the reference's results.
double sweep(at::Tensor &W, const at::Tensor &hinv, const column_fn &fq, const sweep_options &opt = {});

// Step 9 from V = U⁻¹ (hessian_factor::hinv_inverse), which needs no triangular inverse of the
// whole factor. With D = W_orig - Q over the columns already done, block B starts from
//   W_B = W_orig_B + D_prev · V'[prev, B],   V' = V · blockdiag(U_BB),  U_BB = V_BB⁻¹,
// the reference's W_B = W_orig_B - Err_prev · U[prev, B], since U[prev, B] =
// -U[prev, prev] · V[prev, B] · U_BB and Err_prev · U[prev, prev] = D_prev. So the lazy update
// is the reference's GEMM with D and V' for Err and U; V' (128-wide products above the
// diagonal blocks) is formed once by the factor (hessian_factor::blocked must equal
// opt.block_size). Same algorithm, other rounding: the results match the reference to rounding
// (a value can land on the neighbouring level). Row tasks run in parallel as in sweep; memory:
// a copy of W more.
double sweep_inverse_factor(at::Tensor &W, const hessian_factor &f, const column_fn &fq,
                            const sweep_options &opt = {});
// The same step written as the reference writes it, one small tensor op after another per
// column: the benchmark's baseline and the tests' oracle.
double sweep_reference(at::Tensor &W, const at::Tensor &hinv, const column_fn &fq, int64_t block_size = 128);

// W in sweep order: an fp32 copy, columns permuted. Dead columns are zeroed by zero_dead
// (llm-compressor observes the permuted weight for act-order group before zeroing them).
at::Tensor to_sweep_order(const at::Tensor &weight, const hessian_factor &f);
void zero_dead(at::Tensor &W, const hessian_factor &f);
// Back to the original column order (step 10).
at::Tensor from_sweep_order(const at::Tensor &W, const hessian_factor &f);

} // namespace llmc_gptq
