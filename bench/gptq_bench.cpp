// GPTQ on one Linear, against baselines measured in the same run:
//   (a) Hessian accumulation: the symmetric rank-k update (cblas_ssyrk, and GEMMs on strips of
//       the lower triangle) against a plain full XᵀX GEMM of the same data;
//   (b) the solve (Hessian factor + column sweep) against the solve written as llm-compressor
//       writes it: cholesky -> cholesky_inverse -> upper cholesky, then one small tensor op after
//       another per column, each column rounded by compressed-tensors' torch ops; the plugin's
//       solve factors with one reversed Cholesky (V = U⁻¹, blocked for the sweep) and sweeps
//       from V, rounding with the host's fake_quantize (args looked up by string, as the ABI
//       does); the U route (reversed Cholesky + triangular inverse, then the U-sweep, bit for
//       bit the reference's on the same U) is reported beside it;
//   (c) both as GFLOP/s against this machine's fp32 GEMM speed.
// A 4096x4096 Linear and a 4096x11008 one (down_proj), H from 128 sequences of 512 tokens of
// random activations with uneven channel scales, W4A16 (int4, group 128, act-order static).
//   bench-gptq [--quick] [--widths 4096,11008] [--rows N] [--sequences N] [--seq-len N]
// --quick: 1024 rows, widths 1024 and 2816, 16 x 256 tokens.
#include "gptq_solver.h"
#include "hessian.h"
#include "quant/args.h"
#include "quant/qparams.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unistd.h>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct row {
    std::string step;
    double seconds = 0, flops = 0, ratio = NAN;
};

void print_table(const std::string &title, const std::vector<row> &rows, double gemm_gflops) {
    std::printf("\n%s\n", title.c_str());
    std::printf("  %-52s %10s %9s %9s %9s\n", "step", "time (s)", "ratio", "GFLOP/s", "of GEMM");
    for (const auto &r : rows) {
        const double gf = r.flops > 0 && r.seconds > 0 ? r.flops / r.seconds / 1e9 : NAN;
        char ratio[32] = "", g[32] = "", pct[32] = "";
        if (!std::isnan(r.ratio)) std::snprintf(ratio, sizeof ratio, "%.3f", r.ratio);
        if (!std::isnan(gf)) {
            std::snprintf(g, sizeof g, "%.1f", gf);
            std::snprintf(pct, sizeof pct, "%.0f%%", 100.0 * gf / gemm_gflops);
        }
        std::printf("  %-52s %10.3f %9s %9s %9s\n", r.step.c_str(), r.seconds, ratio, g, pct);
    }
    std::fflush(stdout);
}

double gemm_gflops(int64_t n) {
    const at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
    at::mm(a, b); // warm up
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
        const auto t0 = clock_type::now();
        at::mm(a, b);
        best = std::min(best, since(t0));
    }
    return 2.0 * n * n * n / best / 1e9;
}

// Flops of the strip GEMMs syrk_lower's fallback runs (same strips as hessian.cpp).
double strip_flops(int64_t c, int64_t tokens) {
    const int64_t strips = c >= 2048 ? 8 : c >= 512 ? 4 : 1;
    const int64_t step = std::max<int64_t>(64, ((c + strips - 1) / strips + 63) / 64 * 64);
    double f = 0;
    for (int64_t r0 = 0; r0 < c; r0 += step) f += 2.0 * tokens * (std::min(c, r0 + step) - r0) * std::min(c, r0 + step);
    return f;
}

struct hessian_result {
    at::Tensor mean; // for the solve
    std::vector<row> rows;
};

hessian_result bench_hessian(int64_t c, int64_t sequences, int64_t seq_len, bool pooled) {
    const at::Tensor channel_scale = at::exp(0.5 * at::randn({c})); // uneven channels, as real activations
    at::Tensor full = at::zeros({c, c}), cblas = at::zeros({c, c}), strips = at::zeros({c, c});
    const bool have_cblas = llmc_gptq::default_syrk_backend() == llmc_gptq::syrk_backend::cblas;
    double t_full = 0, t_cblas = 0, t_strips = 0, t_pool = 0;
    // What the plugin runs per layer: q/k/v hooks see one input; the pool folds it in once.
    llmc_gptq::hessian_pool pool;
    for (int64_t s = 0; s < sequences; ++s) {
        const at::Tensor X = (at::randn({seq_len, c}) * channel_scale).contiguous(); // not timed
        auto t0 = clock_type::now();
        full.addmm_(X.t(), X, 1.0, 2.0);
        t_full += since(t0);
        if (have_cblas) {
            t0 = clock_type::now();
            llmc_gptq::syrk_lower(cblas, X, 2.0f, llmc_gptq::syrk_backend::cblas);
            t_cblas += since(t0);
        }
        t0 = clock_type::now();
        llmc_gptq::syrk_lower(strips, X, 2.0f, llmc_gptq::syrk_backend::blocked_addmm);
        t_strips += since(t0);
        if (pooled) {
            const at::Tensor x = X.unsqueeze(0); // [1, tokens, c], as a hook sees it
            t0 = clock_type::now();
            for (const char *m : {"q_proj", "k_proj", "v_proj"}) pool.add(m, x);
            t_pool += since(t0);
        }
    }
    if (pooled) {
        const auto t0 = clock_type::now();
        for (const char *m : {"q_proj", "k_proj", "v_proj"}) pool.take(m, false); // the last flush
        t_pool += since(t0);
    }
    const double n = static_cast<double>(sequences * seq_len);
    hessian_result r;
    r.rows.push_back({"H: full X^T X GEMM (baseline)", t_full, 2.0 * n * c * c, 1.0});
    auto check = [&](const at::Tensor &lower, const char *what) {
        const double err = (llmc_gptq::symmetric_from_lower(lower) - full).abs().max().item<double>() /
                           full.abs().max().item<double>();
        if (err > 1e-4) std::printf("  warning: %s differs from the full product by %.2e (relative)\n", what, err);
    };
    if (have_cblas) {
        r.rows.push_back({"H: symmetric rank-k, cblas_ssyrk", t_cblas, n * c * (c + 1.0), t_cblas / t_full});
        check(cblas, "cblas_ssyrk");
    }
    r.rows.push_back({"H: symmetric rank-k, addmm on strips", t_strips, strip_flops(c, seq_len) * sequences,
                      t_strips / t_full});
    check(strips, "strip addmm");
    if (pooled)
        r.rows.push_back({"H: q/k/v through hessian_pool vs 3 GEMMs", t_pool, n * c * (c + 1.0), t_pool / (3 * t_full)});
    r.mean = full / static_cast<double>(sequences);
    return r;
}

std::vector<row> bench_solve(int64_t rows, int64_t c, const at::Tensor &H, int shared, std::string &note) {
    using namespace llmc::quant;
    const std::string args_json =
        R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 128})";
    const quant_args args = args_from_json(nlohmann::json::parse(args_json), "bench");
    const std::string channel_json = R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "channel"})";
    const at::Tensor W = at::randn({rows, c}) * 0.02;
    const qparams qp = qparams_observe(args, W); // once, from the original weights
    const at::Tensor scale_t = qp.scale.t().contiguous(), zp_t = qp.zero_point.t().contiguous();

    // The factor as llm-compressor writes it (the baseline's), and the plugin's.
    auto t0 = clock_type::now();
    const llmc_gptq::hessian_factor f_ref =
        llmc_gptq::factor_hessian(H.clone(), /*act_order=*/true, 0.01, llmc_gptq::factor_method::inverse_cholesky);
    const double t_factor_ref = since(t0);
    t0 = clock_type::now();
    const llmc_gptq::hessian_factor f = llmc_gptq::factor_hessian(H.clone(), /*act_order=*/true, 0.01);
    const double t_factor = since(t0);
    t0 = clock_type::now();
    const llmc_gptq::hessian_factor fv =
        llmc_gptq::factor_hessian(H.clone(), /*act_order=*/true, 0.01, llmc_gptq::factor_method::cholesky_only);
    const double t_factor_v = since(t0);
    if (f.fell_back || f_ref.fell_back) std::printf("  warning: a factorization fell back to RTN\n");
    const double u_diff = (f.hinv - f_ref.hinv).abs().max().item<double>() / f_ref.hinv.abs().max().item<double>();
    const at::Tensor g_idx = at::div(at::arange(c, at::kLong), 128, "floor").index_select(0, f.perm).contiguous();
    const int64_t *gi = g_idx.data_ptr<int64_t>();
    auto column_qparams = [&](const at::Tensor &col, int64_t j, int64_t rb) {
        qparams q;
        q.scale = scale_t[gi[j]].slice(0, rb, rb + col.size(0)).unsqueeze(1);
        q.zero_point = zp_t[gi[j]].slice(0, rb, rb + col.size(0)).unsqueeze(1);
        return q;
    };

    // The plugin's rounding: the host's fake_quantize behind the ABI, which looks the args
    // string up in its cache of parsed args.
    std::atomic<int64_t> calls{0};
    std::mutex cache_mu;
    std::unordered_map<std::string, quant_args> cache;
    const llmc_gptq::column_fn fq = [&](const at::Tensor &col, int64_t j, int64_t rb) {
        ++calls;
        const quant_args *a = nullptr;
        {
            std::lock_guard<std::mutex> lock(cache_mu);
            auto it = cache.find(channel_json);
            if (it == cache.end())
                it = cache.emplace(channel_json, args_from_json(nlohmann::json::parse(channel_json), "args")).first;
            a = &it->second;
        }
        return fake_quantize(*a, col, column_qparams(col, j, rb)).to(col.scalar_type());
    };
    // The reference's rounding: compressed-tensors' fake_quantize, one torch op after another.
    const llmc_gptq::column_fn fq_ref = [&](const at::Tensor &col, int64_t j, int64_t rb) {
        ++calls;
        const qparams q = column_qparams(col, j, rb);
        const at::TensorOptions f32 = col.options().dtype(at::kFloat);
        at::Tensor y = col / q.scale + q.zero_point.to(col.scalar_type());
        y = at::round(at::clamp(y, at::scalar_tensor(-8.0, f32), at::scalar_tensor(7.0, f32)));
        const at::Tensor v = y.to(q.scale.scalar_type()) - q.zero_point.to(q.scale.scalar_type());
        return (v * q.scale).to(col.scalar_type());
    };

    at::Tensor W0 = llmc_gptq::to_sweep_order(W, f);
    llmc_gptq::zero_dead(W0, f);
    // Each sweep at 1 thread and at all threads; a baseline is only as good as its best run.
    const int threads = at::get_num_threads();
    struct run {
        double seconds = 1e30, loss = 0;
        int threads = 0;
        int64_t calls = 0;
        at::Tensor W;
    };
    // 0: the reference, 1: native from U, 2: native from V = U⁻¹ (the plugin's).
    auto best_of = [&](int kind, const llmc_gptq::hessian_factor &fac) {
        const at::Tensor &hinv = fac.hinv;
        run best;
        for (int t : {1, threads}) {
            at::set_num_threads(t);
            at::Tensor Wt = W0.clone();
            calls = 0;
            const auto t0 = clock_type::now();
            const double loss = kind == 2   ? llmc_gptq::sweep_inverse_factor(Wt, fac, fq)
                                : kind == 1 ? llmc_gptq::sweep(Wt, hinv, fq)
                                            : llmc_gptq::sweep_reference(Wt, hinv, fq_ref);
            const double s = since(t0);
            if (s < best.seconds) best = {s, loss, t, calls.load(), Wt};
            if (t == threads) break;
        }
        at::set_num_threads(threads);
        return best;
    };
    const run native = best_of(1, f), ref = best_of(0, f_ref), plugin = best_of(2, fv);
    // The sweeps on the same factor must agree bit for bit (this also checks the host's scalar
    // fake_quantize against the torch ops); the factors differ only by rounding.
    at::Tensor Wsame = W0.clone();
    const double loss_same = llmc_gptq::sweep(Wsame, f_ref.hinv, fq);
    const double t_native = native.seconds, t_ref = ref.seconds;
    const double changed = (native.W != ref.W).sum().item<double>() / static_cast<double>(native.W.numel());
    const double changed_v = (plugin.W != ref.W).sum().item<double>() / static_cast<double>(plugin.W.numel());
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "  check, same factor: max |W_native - W_reference| = %.3g, loss %.9g vs %.9g\n"
                  "  check, plugin's factor: max |U - U_reference| / max |U_reference| = %.3g; loss %.6g vs %.6g; "
                  "%.3g%% of weights differ\n"
                  "  check, plugin's route (V = U^-1): loss %.6g vs %.6g; %.3g%% of weights differ, max |W - W_ref| "
                  "%.3g\n"
                  "  best runs at %d vs %d thread(s); fake_quantize calls %lld vs %lld",
                  (Wsame - ref.W).abs().max().item<double>(), loss_same, ref.loss, u_diff, native.loss, ref.loss,
                  100.0 * changed, plugin.loss, ref.loss, 100.0 * changed_v, (plugin.W - ref.W).abs().max().item<double>(),
                  native.threads, ref.threads, static_cast<long long>(native.calls),
                  static_cast<long long>(ref.calls));
    note = buf;

    const double cd = static_cast<double>(c), rd = static_cast<double>(rows);
    const double f_factor_ref = 4.0 / 3.0 * cd * cd * cd; // cholesky + cholesky_inverse + cholesky
    const double f_factor = 2.0 / 3.0 * cd * cd * cd;     // cholesky + triangular inverse
    double f_sweep = 0;                                   // in-block updates + lazy block GEMMs
    for (int64_t i1 = 0; i1 < c; i1 += 128) {
        const int64_t n = std::min<int64_t>(128, c - i1);
        f_sweep += rd * n * (n + 1.0) + 2.0 * rd * n * (c - i1 - n);
    }
    std::vector<row> out;
    out.push_back({"solve: factor, chol -> chol_inverse -> chol (baseline)", t_factor_ref, f_factor_ref, 1.0});
    out.push_back({std::string("solve: factor, reversed chol -> ") + (llmc_gptq::have_lapack_trtri() ? "strtri" : "trsm"),
                   t_factor, f_factor, t_factor_ref / t_factor});
    out.push_back({"solve: factor, reversed chol only (V = U^-1, plugin)", t_factor_v, cd * cd * cd / 3.0,
                   t_factor_ref / t_factor_v});
    out.push_back({"solve: sweep, reference op by op (best)", t_ref, f_sweep, 1.0});
    out.push_back({"solve: sweep, native row tasks from U (best)", t_native, f_sweep, t_ref / t_native});
    out.push_back({"solve: sweep, native row tasks from V (plugin, best)", plugin.seconds, f_sweep,
                   t_ref / plugin.seconds});
    out.push_back({"solve total, reference (baseline)", t_factor_ref + t_ref, f_factor_ref + f_sweep, 1.0});
    out.push_back({"solve total, native from U (ratio = speedup)", t_factor + t_native, f_factor + f_sweep,
                   (t_factor_ref + t_ref) / (t_factor + t_native)});
    const double t_plugin = t_factor_v + plugin.seconds;
    out.push_back({"solve total, plugin from V (ratio = speedup)", t_plugin, cd * cd * cd / 3.0 + f_sweep,
                   (t_factor_ref + t_ref) / t_plugin});
    if (shared > 1) {
        // Modules sharing a Hessian share its factor (q/k/v): the reference factors it per module.
        const double k = static_cast<double>(shared), ref_k = k * (t_factor_ref + t_ref),
                     nat_k = t_factor_v + k * plugin.seconds;
        out.push_back({"solve q/k/v, reference: 3 x total (derived)", ref_k, k * (f_factor_ref + f_sweep), 1.0});
        out.push_back({"solve q/k/v, plugin: 1 factor + 3 sweeps (derived)", nat_k, cd * cd * cd / 3.0 + k * f_sweep,
                       ref_k / nat_k});
    }
    return out;
}

std::vector<int64_t> parse_list(const std::string &s) {
    std::vector<int64_t> v;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) v.push_back(std::atoll(item.c_str()));
    return v;
}

} // namespace

int main(int argc, char **argv) {
    // On a shared machine libgomp's default active spin-wait stalls every parallel op whenever a
    // core is taken by someone else; passive waiting is what a fair measurement needs. libgomp
    // reads the variable when it loads, so set it and start again.
    if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        execv("/proc/self/exe", argv);
    }
    bool quick = false;
    std::vector<int64_t> widths;
    int64_t rows = 0, sequences = 0, seq_len = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--quick") quick = true;
        else if (a == "--widths") widths = parse_list(next());
        else if (a == "--rows") rows = std::atoll(next().c_str());
        else if (a == "--sequences") sequences = std::atoll(next().c_str());
        else if (a == "--seq-len") seq_len = std::atoll(next().c_str());
        else {
            std::fprintf(stderr, "usage: %s [--quick] [--widths 4096,11008] [--rows N] [--sequences N] [--seq-len N]\n",
                         argv[0]);
            return 2;
        }
    }
    if (widths.empty()) widths = quick ? std::vector<int64_t>{1024, 2816} : std::vector<int64_t>{4096, 11008};
    if (rows == 0) rows = quick ? 1024 : 4096;
    if (sequences == 0) sequences = quick ? 16 : 128;
    if (seq_len == 0) seq_len = quick ? 256 : 512;

    at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    at::manual_seed(0);
    const double gemm = gemm_gflops(quick ? 2048 : 4096);
    std::printf("GPTQ benchmark: %d threads (OMP_WAIT_POLICY=%s), fp32 GEMM %.1f GFLOP/s (%lld^3), Hessian syrk: %s\n",
                at::get_num_threads(), std::getenv("OMP_WAIT_POLICY"), gemm, static_cast<long long>(quick ? 2048 : 4096),
                llmc_gptq::to_string(llmc_gptq::default_syrk_backend()));
    for (int64_t c : widths) {
        std::printf("\n== Linear [%lld out, %lld in], H from %lld x %lld tokens, W4A16 group 128, actorder static\n",
                    static_cast<long long>(rows), static_cast<long long>(c), static_cast<long long>(sequences),
                    static_cast<long long>(seq_len));
        std::fflush(stdout);
        // q/k/v (and gate/up) read one input at hidden width; down_proj (11008) has no partner.
        hessian_result h = bench_hessian(c, sequences, seq_len, c <= 4096);
        print_table("(a) Hessian accumulation (ratio = time / full GEMM; GFLOP/s counts the FLOPs each does)", h.rows,
                    gemm);
        std::string note;
        const std::vector<row> s = bench_solve(rows, c, h.mean, c <= 4096 ? 3 : 1, note);
        print_table("(b) GPTQ solve (sweep ratio and total ratio = speedup over the reference)", s, gemm);
        std::printf("%s\n", note.c_str());
    }
    return 0;
}
