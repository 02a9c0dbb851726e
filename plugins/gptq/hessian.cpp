#include "hessian.h"

#include <algorithm>
#include <stdexcept>

#ifdef LLMC_GPTQ_HAVE_CBLAS
#include <cblas.h>
#endif

namespace llmc_gptq {

syrk_backend default_syrk_backend() {
#ifdef LLMC_GPTQ_HAVE_CBLAS
    return syrk_backend::cblas;
#else
    return syrk_backend::blocked_addmm;
#endif
}

const char *to_string(syrk_backend b) { return b == syrk_backend::cblas ? "cblas_ssyrk" : "blocked addmm"; }

void syrk_lower(at::Tensor &H, const at::Tensor &X, float alpha, syrk_backend backend) {
    const int64_t c = H.size(0), t = X.size(0);
    if (H.scalar_type() != at::kFloat || X.scalar_type() != at::kFloat || !H.is_contiguous() || !X.is_contiguous() ||
        X.size(1) != c)
        throw std::invalid_argument("syrk_lower: needs contiguous fp32 H [c, c] and X [t, c]");
    if (t == 0) return;
#ifdef LLMC_GPTQ_HAVE_CBLAS
    if (backend == syrk_backend::cblas) {
        // Row-major lower C += alpha·AᵀA with A = X [t, c]: half the FLOPs of a full product.
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, static_cast<int>(c), static_cast<int>(t), alpha,
                    X.data_ptr<float>(), static_cast<int>(c), 1.0f, H.data_ptr<float>(), static_cast<int>(c));
        return;
    }
#endif
    // Row strips of the lower triangle, each one GEMM up to and including its diagonal block:
    // with s strips this costs (s+1)/(2s) of the full product, in GEMMs large enough for BLAS.
    const int64_t strips = c >= 2048 ? 8 : c >= 512 ? 4 : 1;
    const int64_t step = std::max<int64_t>(64, ((c + strips - 1) / strips + 63) / 64 * 64);
    for (int64_t r0 = 0; r0 < c; r0 += step) {
        const int64_t r1 = std::min(c, r0 + step);
        at::Tensor strip = H.slice(0, r0, r1).slice(1, 0, r1);
        strip.addmm_(X.slice(1, r0, r1).t(), X.slice(1, 0, r1), /*beta=*/1.0, /*alpha=*/alpha);
    }
}

at::Tensor symmetric_from_lower(const at::Tensor &H) {
    at::Tensor lower = at::tril(H);
    return lower + at::tril(lower, -1).t();
}

hessian_sum::hessian_sum(int64_t columns) : lower_(at::zeros({columns, columns}, at::kFloat)) {}

void hessian_sum::add(const at::Tensor &x) {
    const int64_t c = columns();
    if (x.dim() < 1 || x.size(-1) != c)
        throw std::invalid_argument("Hessian input has " + std::to_string(x.dim() ? x.size(-1) : 0) +
                                    " features, expected " + std::to_string(c));
    // llm-compressor: a 2-D input is one sample; otherwise the leading dimension counts.
    const int64_t added = x.dim() <= 2 ? 1 : x.size(0);
    const at::Tensor X = x.reshape({-1, c}).to(at::kFloat).contiguous();
    // alpha = 2 is (√2·X)ᵀ(√2·X) without scaling a copy of X first.
    syrk_lower(lower_, X, 2.0f);
    samples_ += added;
}

at::Tensor hessian_sum::mean() const {
    at::Tensor H = symmetric_from_lower(lower_);
    if (samples_ > 0) H.div_(static_cast<double>(samples_));
    return H;
}

hessian_sum hessian_sum::copy() const {
    hessian_sum out(0);
    out.lower_ = lower_.clone();
    out.samples_ = samples_;
    return out;
}

// ---- pool

bool hessian_pool::same_input(const group &g, const at::Tensor &x) {
    if (!g.pending.defined() || g.src != x.data_ptr() || g.src_dtype != x.scalar_type() ||
        x.sizes().vec() != g.src_sizes || x.strides().vec() != g.src_strides)
        return false;
    // Same storage is only a hint (memory is reused between tensors): the values decide.
    return at::equal(g.pending, x.to(at::kFloat));
}

void hessian_pool::start_pending(group &g, const std::string &module, const at::Tensor &x) {
    g.pending = x.to(x.options().dtype(at::kFloat), /*non_blocking=*/false, /*copy=*/true).contiguous();
    g.seen = {module};
    g.src = x.data_ptr();
    g.src_sizes = x.sizes().vec();
    g.src_strides = x.strides().vec();
    g.src_dtype = x.scalar_type();
}

void hessian_pool::leave(const std::string &module, const group_ptr &g) {
    auto own = std::make_shared<group>(0);
    own->sum = g->sum.copy(); // everything the group folded in, all of which this module saw
    own->members = {module};
    g->members.erase(module);
    g->seen.erase(module);
    of_[module] = own;
}

void hessian_pool::flush(const group_ptr &g) {
    if (!g->pending.defined()) return;
    // A member that did not see this input must not get it: it leaves first.
    const std::set<std::string> members = g->members;
    for (const auto &m : members)
        if (g->seen.count(m) == 0) leave(m, g);
    g->sum.add(g->pending);
    ++updates_;
    g->pending = at::Tensor();
    g->seen.clear();
    g->src = nullptr;
}

void hessian_pool::add(const std::string &module, const at::Tensor &x) {
    auto it = of_.find(module);
    if (it == of_.end()) {
        // A newcomer may join a group that has folded nothing in yet and holds this very input.
        for (const auto &kv : of_) {
            const group_ptr &g = kv.second;
            if (g->sum.samples() == 0 && g->seen.count(module) == 0 && g->sum.columns() == x.size(-1) &&
                same_input(*g, x)) {
                g->members.insert(module);
                g->seen.insert(module);
                of_[module] = g;
                ++saved_;
                return;
            }
        }
        auto g = std::make_shared<group>(x.size(-1));
        g->members = {module};
        of_[module] = g;
        start_pending(*g, module, x);
        return;
    }
    group_ptr g = it->second;
    if (g->pending.defined() && g->seen.count(module) == 0) {
        if (same_input(*g, x)) {
            g->seen.insert(module);
            ++saved_;
            return;
        }
        leave(module, g);
        start_pending(*of_[module], module, x);
        return;
    }
    // This module already saw the pending input: a new forward begins.
    flush(g);
    start_pending(*g, module, x);
}

const void *hessian_pool::group_of(const std::string &module) const {
    auto it = of_.find(module);
    return it == of_.end() ? nullptr : it->second.get();
}

hessian_pool::taken hessian_pool::take(const std::string &module, bool want_mean) {
    auto it = of_.find(module);
    if (it == of_.end()) throw std::invalid_argument("no Hessian was accumulated for '" + module + "'");
    group_ptr g = it->second;
    flush(g);
    taken t;
    if (want_mean) t.mean = g->sum.mean();
    t.samples = g->sum.samples();
    t.group = g.get();
    g->members.erase(module);
    t.shared_with.assign(g->members.begin(), g->members.end());
    of_.erase(module);
    return t;
}

std::vector<std::string> hessian_pool::modules() const {
    std::vector<std::string> out;
    for (const auto &kv : of_) out.push_back(kv.first);
    return out;
}

} // namespace llmc_gptq
