#include "gptq_solver.h"

#ifdef LLMC_GPTQ_HAVE_CBLAS
#include <cblas.h>
#endif

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <dlfcn.h>
#include <cstring>
#include <optional>
#include <vector>

namespace llmc_gptq {

#ifdef LLMC_GPTQ_HAVE_LAPACK_TRTRI
extern "C" void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda, int *info);
extern "C" void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
#endif

bool have_lapack_trtri() {
#ifdef LLMC_GPTQ_HAVE_LAPACK_TRTRI
    return true;
#else
    return false;
#endif
}

namespace {

bool cholesky(const at::Tensor &m, bool upper, at::Tensor &out) {
    auto [L, info] = at::linalg_cholesky_ex(m, upper, /*check_errors=*/false);
    out = L;
    return info.item<int64_t>() == 0 && at::isfinite(L).all().item<bool>();
}

// J·M·J for a contiguous square M: reversing both index orders reverses the flat buffer.
void reverse_both(at::Tensor &m) {
    float *p = m.data_ptr<float>();
    std::reverse(p, p + m.numel());
}

// Inverts a contiguous lower-triangular L in place (the upper triangle stays zero).
bool invert_lower(at::Tensor &L) {
#ifdef LLMC_GPTQ_HAVE_LAPACK_TRTRI
    // Row-major L is column-major Lᵀ (upper); inverting that in place leaves L⁻¹ in row-major.
    const int n = static_cast<int>(L.size(0));
    int info = 0;
    strtri_("U", "N", &n, L.data_ptr<float>(), &n, &info);
    return info == 0 && at::isfinite(L).all().item<bool>();
#else
    L = at::linalg_solve_triangular(L, at::eye(L.size(0), L.options()), /*upper=*/false).contiguous();
    return at::isfinite(L).all().item<bool>();
#endif
}

} // namespace

namespace {

// cholesky_only: V = U⁻¹ = J·L·J with J·P·H·P·J = L·Lᵀ (P the act-order permutation, J the
// reversal; see reversed_cholesky below for why), with as few passes over the n² matrix as the
// Cholesky leaves: one gather for P and J together, the factor in place, one pass that reverses,
// clears the lower triangle and checks for non-finite values.
void factor_cholesky_only(at::Tensor H, double dampening_frac, int64_t block, hessian_factor &f) {
    H = H.to(at::kFloat).contiguous();
    const int64_t n = H.size(0);
    std::vector<int64_t> order(static_cast<size_t>(n)); // reversed position -> original column
    const int64_t *perm = f.perm.defined() ? f.perm.data_ptr<int64_t>() : nullptr;
    for (int64_t i = 0; i < n; ++i) order[i] = perm ? perm[n - 1 - i] : n - 1 - i;
    at::Tensor G = at::empty({n, n}, at::kFloat);
    {
        const float *src = H.data_ptr<float>();
        float *dst = G.data_ptr<float>();
        at::parallel_for(0, n, 16, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                const float *row = src + order[i] * n;
                float *out = dst + i * n;
                for (int64_t j = 0; j < n; ++j) out[j] = row[order[j]];
            }
        });
    }
    H = at::Tensor();
    // Dead columns and damping on the diagonal, in sweep order as the reference has it (the
    // mean sums the same values in the same order).
    float *g = G.data_ptr<float>();
    at::Tensor diag = at::empty({n}, at::kFloat);
    float *d = diag.data_ptr<float>();
    for (int64_t k = 0; k < n; ++k) d[k] = g[(n - 1 - k) * (n + 1)];
    f.dead = diag == 0;
    diag.masked_fill_(f.dead, 1.0);
    diag.add_(dampening_frac * at::mean(diag));
    for (int64_t k = 0; k < n; ++k) g[(n - 1 - k) * (n + 1)] = d[k];

    bool ok = false;
    at::Tensor L;
#ifdef LLMC_GPTQ_HAVE_LAPACK_TRTRI
    // In place, without ATen's column-major copies: row-major lower L is column-major upper,
    // what spotrf("U") leaves; the other triangle keeps G (cleared below).
    {
        const int nn = static_cast<int>(n);
        int info = 0;
        spotrf_("U", &nn, g, &nn, &info);
        ok = info == 0;
        L = G;
    }
#else
    ok = cholesky(G, false, L);
    if (ok) L = L.contiguous();
#endif
    G = at::Tensor();
    if (ok) {
        // V[i][j] = L[n-1-i][n-1-j] for j >= i, else 0: rows i and n-1-i trade places.
        float *p = L.data_ptr<float>();
        std::atomic<bool> finite{true};
        at::parallel_for(0, (n + 1) / 2, 16, [&](int64_t i0, int64_t i1) {
            std::vector<float> buf(static_cast<size_t>(n));
            bool good = true;
            for (int64_t a = i0; a < i1; ++a) {
                const int64_t b = n - 1 - a;
                float *ra = p + a * n, *rb = p + b * n;
                std::memcpy(buf.data(), ra, sizeof(float) * n);
                for (int64_t j = 0; j < n; ++j) {
                    const float v = j >= a ? rb[n - 1 - j] : 0.0f;
                    good = good && std::isfinite(v);
                    ra[j] = v;
                }
                if (b != a)
                    for (int64_t j = 0; j < n; ++j) {
                        const float v = j >= b ? buf[n - 1 - j] : 0.0f;
                        good = good && std::isfinite(v);
                        rb[j] = v;
                    }
            }
            if (!good) finite = false;
        });
        ok = finite;
    }
    if (ok) {
        // Blocked for the sweep, in place: V[:B, B] <- V[:B, B] · V_BB⁻¹ (a triangular solve
        // from the right), the diagonal blocks kept. Blocks are independent.
        for (int64_t i1 = block; i1 < n; i1 += block) {
            const int64_t m = std::min(i1 + block, n) - i1;
#ifdef LLMC_GPTQ_HAVE_CBLAS
            float *v = L.data_ptr<float>();
            cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, static_cast<int>(i1),
                        static_cast<int>(m), 1.0f, v + i1 * n + i1, static_cast<int>(n), v + i1,
                        static_cast<int>(n));
#else
            at::Tensor above = L.slice(0, 0, i1).slice(1, i1, i1 + m);
            above.copy_(at::linalg_solve_triangular(L.slice(0, i1, i1 + m).slice(1, i1, i1 + m), above,
                                                    /*upper=*/true, /*left=*/false));
#endif
        }
        f.hinv_inverse = L;
    } else {
        f.fell_back = true;
        f.hinv_inverse = at::eye(n, at::kFloat); // blocked as it is
    }
    f.blocked = block;
}

} // namespace

hessian_factor factor_hessian(at::Tensor H, bool act_order, double dampening_frac, factor_method method,
                              int64_t block_size) {
    block_size = std::max<int64_t>(1, block_size);
    hessian_factor f;
    if (act_order) {
        // torch.argsort(diag, descending=True); a stable sort keeps ties in column order.
        f.perm = std::get<1>(at::sort(at::diag(H), /*stable=*/true, /*dim=*/0, /*descending=*/true));
        if (method == factor_method::cholesky_only) {
            factor_cholesky_only(std::move(H), dampening_frac, block_size, f);
            return f;
        }
        H = H.index_select(0, f.perm).index_select(1, f.perm);
    } else if (method == factor_method::cholesky_only) {
        factor_cholesky_only(std::move(H), dampening_frac, block_size, f);
        return f;
    }
    at::Tensor diag = H.diagonal();
    f.dead = diag == 0;
    diag.masked_fill_(f.dead, 1.0); // H[dead, dead] = 1 touches the diagonal only
    const at::Tensor damp = dampening_frac * at::mean(diag);
    diag.add_(damp);
    diag = at::Tensor();
    const int64_t n = H.size(0);
    bool ok = false;
    if (method == factor_method::inverse_cholesky) {
        at::Tensor L, U;
        ok = cholesky(H, false, L) && cholesky(at::cholesky_inverse(L), true, U);
        if (ok) f.hinv = U;
    } else {
        // H⁻¹ = UᵀU with U upper. With J·H·J = L·Lᵀ: H = (J·L·J)(J·L·J)ᵀ, so H⁻¹ = UᵀU for
        // U = (J·L·J)⁻¹ = J·L⁻¹·J, which is upper. Half the flops of the route above.
        H = H.contiguous();
        reverse_both(H);
        at::Tensor L;
        ok = cholesky(H, false, L);
        H = at::Tensor(); // free the input before the inverse
        if (ok) {
            L = L.contiguous();
            ok = invert_lower(L);
        }
        if (ok) {
            reverse_both(L);
            f.hinv = L;
        }
    }
    if (!ok) {
        f.fell_back = true;
        f.hinv = at::eye(n, at::kFloat);
    }
    return f;
}

at::Tensor to_sweep_order(const at::Tensor &weight, const hessian_factor &f) {
    at::Tensor W = weight.to(at::kFloat);
    W = f.perm.defined() ? W.index_select(1, f.perm) : W.clone();
    return W.contiguous();
}

void zero_dead(at::Tensor &W, const hessian_factor &f) { W.masked_fill_(f.dead.unsqueeze(0), 0.0); }

at::Tensor from_sweep_order(const at::Tensor &W, const hessian_factor &f) {
    if (!f.perm.defined()) return W;
    return W.index_select(1, at::argsort(f.perm));
}

namespace {

// One block of columns [i1, i1 + n) for rows [rb, re): the column loop of the reference with
// the in-block update W1[:, i:] -= err ⊗ U[i, i:] fused into one pass per row. Ub is the
// block's diagonal part of U (rows ldu apart); err gets the task's rows, [re - rb, n].
void sweep_rows(float *W, int64_t c, int64_t i1, int64_t n, int64_t rb, int64_t re, const float *Ub, int64_t ldu,
                float *err, double *loss, const column_fn &fq) {
    const int64_t R = re - rb;
    std::vector<float> w1(static_cast<size_t>(R * n));
    for (int64_t r = 0; r < R; ++r) std::memcpy(&w1[r * n], W + (rb + r) * c + i1, sizeof(float) * n);
    at::Tensor column = at::empty({R, 1}, at::kFloat);
    float *col = column.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t r = 0; r < R; ++r) col[r] = w1[r * n + i];
        const at::Tensor q = fq(column, i1 + i, rb).to(at::kFloat).contiguous();
        const float *qv = q.data_ptr<float>();
        const float *u = Ub + i * ldu;
        const float d = u[i];
        for (int64_t r = 0; r < R; ++r) {
            float *row = &w1[r * n];
            const float diff = col[r] - qv[r];
            loss[rb + r] += static_cast<double>(diff * diff / (d * d));
            const float e = diff / d;
            err[r * n + i] = e;
            row[i] = qv[r];
            for (int64_t j = i + 1; j < n; ++j) row[j] -= e * u[j];
        }
    }
    for (int64_t r = 0; r < R; ++r) std::memcpy(W + (rb + r) * c + i1, &w1[r * n], sizeof(float) * n);
}

// OpenBLAS's thread count, when the process's BLAS is OpenBLAS: looked up at run time, as these
// are not part of the BLAS interface.
struct openblas_threads {
    int (*get)() = nullptr;
    void (*set)(int) = nullptr;
    openblas_threads() {
        get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
        set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
        if (get == nullptr || set == nullptr) get = nullptr, set = nullptr;
    }
};

// Sets OpenBLAS to one thread for its lifetime.
struct single_threaded_blas {
    const openblas_threads &t;
    int saved;
    explicit single_threaded_blas(const openblas_threads &t) : t(t), saved(t.get()) { t.set(1); }
    ~single_threaded_blas() { t.set(saved); }
};

// One task per thread, but not so small that starting threads costs more than the work.
int64_t rows_per_task(int64_t r, int64_t threads, const sweep_options &opt) {
    return opt.rows_per_task > 0 ? opt.rows_per_task : std::max<int64_t>(256, (r + threads - 1) / threads);
}

} // namespace

double sweep(at::Tensor &W, const at::Tensor &hinv, const column_fn &fq, const sweep_options &opt) {
    TORCH_CHECK(W.scalar_type() == at::kFloat && W.is_contiguous() && W.dim() == 2, "sweep: W must be fp32 [r, c]");
    const int64_t r = W.size(0), c = W.size(1), B = std::max<int64_t>(1, opt.block_size);
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    const int64_t task = rows_per_task(r, threads, opt), tasks = (r + task - 1) / task;
    std::vector<double> losses(static_cast<size_t>(r), 0.0);
    float *Wp = W.data_ptr<float>();
    const at::Tensor U = hinv.to(at::kFloat).contiguous();
    const float *up = U.data_ptr<float>();

    static const openblas_threads blas;
    if (opt.whole_rows && blas.set != nullptr && tasks > 1 && threads > 1) {
        // Rows never interact: each task sweeps all blocks for its rows, its lazy update a
        // single-threaded GEMM on those rows. No barrier per block, and no idle BLAS threads
        // spinning against the row tasks.
        const single_threaded_blas one(blas);
        at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t rb = t * task, re = std::min(r, (t + 1) * task);
                at::Tensor Err = at::empty({re - rb, B}, at::kFloat);
                at::Tensor Wt = W.slice(0, rb, re);
                for (int64_t i1 = 0; i1 < c; i1 += B) {
                    const int64_t i2 = std::min(i1 + B, c), n = i2 - i1;
                    const at::Tensor E = n == B ? Err : at::empty({re - rb, n}, at::kFloat);
                    sweep_rows(Wp, c, i1, n, rb, re, up + i1 * c + i1, c, E.data_ptr<float>(), losses.data(), fq);
                    if (i2 < c) Wt.slice(1, i2).addmm_(E, U.slice(0, i1, i2).slice(1, i2), 1.0, -1.0);
                }
            }
        });
    } else {
        for (int64_t i1 = 0; i1 < c; i1 += B) {
            const int64_t i2 = std::min(i1 + B, c), n = i2 - i1;
            at::Tensor Err = at::empty({r, n}, at::kFloat);
            float *err = Err.data_ptr<float>();
            at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; ++t)
                    sweep_rows(Wp, c, i1, n, t * task, std::min(r, (t + 1) * task), up + i1 * c + i1, c,
                               err + t * task * n, losses.data(), fq);
            });
            // Lazy batch update of the later columns: one GEMM, all threads.
            if (i2 < c) W.slice(1, i2).addmm_(Err, U.slice(0, i1, i2).slice(1, i2), 1.0, -1.0);
        }
    }
    double loss = 0;
    for (double l : losses) loss += l;
    return loss / 2;
}

double sweep_inverse_factor(at::Tensor &W, const hessian_factor &f, const column_fn &fq, const sweep_options &opt) {
    TORCH_CHECK(W.scalar_type() == at::kFloat && W.is_contiguous() && W.dim() == 2,
                "sweep_inverse_factor: W must be fp32 [r, c]");
    const int64_t r = W.size(0), c = W.size(1), B = std::max<int64_t>(1, opt.block_size);
    TORCH_CHECK(f.hinv_inverse.defined() && f.blocked == B,
                "sweep_inverse_factor: the factor is blocked for ", f.blocked, " columns, the sweep for ", B);
    const at::Tensor Vp = f.hinv_inverse.to(at::kFloat).contiguous(); // V' above the diagonal blocks
    TORCH_CHECK(Vp.dim() == 2 && Vp.size(0) == c && Vp.size(1) == c, "sweep_inverse_factor: V must be [c, c]");
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    const int64_t task = rows_per_task(r, threads, opt), tasks = (r + task - 1) / task;
    std::vector<double> losses(static_cast<size_t>(r), 0.0);
    float *Wp = W.data_ptr<float>();
    static const openblas_threads blas;
    std::optional<single_threaded_blas> one;
    if (blas.set != nullptr && tasks > 1 && threads > 1) one.emplace(blas);
    // U_BB = V_BB⁻¹: the diagonal blocks of U = V⁻¹ (both upper), for the column loops.
    std::vector<at::Tensor> Ubb(static_cast<size_t>((c + B - 1) / B));
    for (int64_t i1 = 0, b = 0; i1 < c; i1 += B, ++b) {
        const int64_t n = std::min(i1 + B, c) - i1;
        Ubb[static_cast<size_t>(b)] = at::linalg_solve_triangular(Vp.slice(0, i1, i1 + n).slice(1, i1, i1 + n),
                                                                  at::eye(n, at::kFloat), /*upper=*/true)
                                          .contiguous();
    }
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t rb = t * task, re = std::min(r, (t + 1) * task), R = re - rb;
            at::Tensor Wt = W.slice(0, rb, re);
            const at::Tensor orig = Wt.clone(); // W_orig of the task's rows
            at::Tensor Err = at::empty({R, B}, at::kFloat), D = at::empty({R, B}, at::kFloat);
            for (int64_t i1 = 0, b = 0; i1 < c; i1 += B, ++b) {
                const int64_t i2 = std::min(i1 + B, c), n = i2 - i1;
                const at::Tensor E = n == B ? Err : at::empty({R, n}, at::kFloat);
                sweep_rows(Wp, c, i1, n, rb, re, Ubb[static_cast<size_t>(b)].data_ptr<float>(), n,
                           E.data_ptr<float>(), losses.data(), fq);
                if (i2 < c) {
                    at::Tensor Db = n == B ? D : D.slice(1, 0, n);
                    at::sub_out(Db, orig.slice(1, i1, i2), Wt.slice(1, i1, i2)); // W_orig - Q
                    Wt.slice(1, i2).addmm_(Db, Vp.slice(0, i1, i2).slice(1, i2));
                }
            }
        }
    });
    double loss = 0;
    for (double l : losses) loss += l;
    return loss / 2;
}

double sweep_reference(at::Tensor &W, const at::Tensor &Hinv, const column_fn &fq, int64_t blocksize) {
    const int64_t num_rows = W.size(0), num_columns = W.size(1);
    at::Tensor losses = at::zeros({num_rows}, W.options());
    for (int64_t i1 = 0; i1 < num_columns; i1 += blocksize) {
        const int64_t i2 = std::min(i1 + blocksize, num_columns), count = i2 - i1;
        at::Tensor W1 = W.slice(1, i1, i2).clone();
        at::Tensor Q1 = at::zeros_like(W1), Err1 = at::zeros_like(W1), losses1 = at::zeros_like(W1);
        at::Tensor Hinv1 = Hinv.slice(0, i1, i2).slice(1, i1, i2);
        for (int64_t i = 0; i < count; ++i) {
            at::Tensor w = W1.select(1, i);
            at::Tensor d = Hinv1[i][i];
            at::Tensor q = fq(w.clone().unsqueeze(1), i1 + i, 0).reshape({num_rows}).to(at::kFloat);
            Q1.select(1, i).copy_(q);
            losses1.select(1, i).copy_((w - q).pow(2) / d.pow(2));
            at::Tensor err1 = (w - q) / d;
            at::Tensor w1_err = err1.unsqueeze(1).matmul(Hinv1[i].slice(0, i).unsqueeze(0));
            W1.slice(1, i).sub_(w1_err);
            Err1.select(1, i).copy_(err1);
        }
        W.slice(1, i1, i2).copy_(Q1);
        losses += at::sum(losses1, 1) / 2;
        W.slice(1, i2).sub_(Err1.matmul(Hinv.slice(0, i1, i2).slice(1, i2)));
    }
    return at::sum(losses).item<double>();
}

} // namespace llmc_gptq
