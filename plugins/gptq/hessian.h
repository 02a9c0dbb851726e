// GPTQ's Hessian: a running fp32 sum of 2·XᵀX over calibration inputs (llm-compressor >= 0.10:
// H += (√2·X)ᵀ(√2·X), n += batch size in sequences; the mean H / n is taken once, at compress
// time), kept as its lower triangle and accumulated with a symmetric rank-k update, and a pool
// that lets modules reading the same input (q/k/v, gate/up) share one sum.
// ATen only: the plugin and bench/gptq_bench.cpp compile this file.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace llmc_gptq {

// How the rank-k update runs: cblas_ssyrk when the plugin was built with a CBLAS, else addmm on
// row strips of the lower triangle.
enum class syrk_backend { cblas, blocked_addmm };
syrk_backend default_syrk_backend();
const char *to_string(syrk_backend b);

// H[i, j] += alpha · Σ_t X[t, i]·X[t, j] for j <= i. H fp32 [c, c] contiguous, X fp32 [t, c]
// contiguous. The upper triangle is left untouched.
void syrk_lower(at::Tensor &H, const at::Tensor &X, float alpha, syrk_backend backend = default_syrk_backend());
// A copy of H with the upper triangle mirrored from the lower one.
at::Tensor symmetric_from_lower(const at::Tensor &H);

class hessian_sum {
  public:
    explicit hessian_sum(int64_t columns);
    // One calibration input [..., c] in any float dtype: 2-D counts as one sample, otherwise
    // the first dimension is the number of samples (llm-compressor's num_added).
    void add(const at::Tensor &x);
    // H / n as a full symmetric fp32 matrix (a fresh tensor the caller may modify).
    at::Tensor mean() const;
    int64_t samples() const { return samples_; }
    int64_t columns() const { return lower_.size(0); }
    hessian_sum copy() const;

  private:
    at::Tensor lower_; // fp32 [c, c], lower triangle valid
    int64_t samples_ = 0;
};

// The Hessians of the modules being calibrated. Modules whose hook sees the very same input
// (same storage, shape and strides, and equal values) in the same forward share one sum: the
// first module's input is kept (a copy) until its next call or the end, then folded in once.
// A module whose input stops matching leaves the group with a copy of the sum so far, so a
// shared sum is always exactly what each member would have accumulated alone.
class hessian_pool {
  public:
    // A hook call of `module` with input `x` (borrowed: copied if kept).
    void add(const std::string &module, const at::Tensor &x);
    bool has(const std::string &module) const { return of_.count(module) != 0; }
    // The mean Hessian of `module` (fp32 [c, c]) and its sample count; the module is forgotten.
    // `group` identifies the sum the module shared (equal for modules that shared one).
    struct taken {
        at::Tensor mean;
        int64_t samples = 0;
        const void *group = nullptr;
        std::vector<std::string> shared_with; // the other modules of that group, still held
    };
    // Without want_mean only the count and group come back (the caller already has the factor).
    taken take(const std::string &module, bool want_mean = true);
    const void *group_of(const std::string &module) const;
    std::vector<std::string> modules() const;
    // Number of rank-k updates done and avoided thanks to sharing (for the log).
    int64_t updates() const { return updates_; }
    int64_t updates_saved() const { return saved_; }
    void clear() { of_.clear(); }

  private:
    struct group {
        explicit group(int64_t c) : sum(c) {}
        hessian_sum sum;
        std::set<std::string> members;
        at::Tensor pending;           // the input of the current forward, not yet folded in
        std::set<std::string> seen;   // members whose current input is `pending`
        const void *src = nullptr;    // where the pending input lived (a cheap first test)
        std::vector<int64_t> src_sizes, src_strides;
        at::ScalarType src_dtype = at::kFloat;
    };
    using group_ptr = std::shared_ptr<group>;

    static bool same_input(const group &g, const at::Tensor &x);
    void start_pending(group &g, const std::string &module, const at::Tensor &x);
    void flush(const group_ptr &g);
    void leave(const std::string &module, const group_ptr &g);

    std::map<std::string, group_ptr> of_;
    int64_t updates_ = 0, saved_ = 0;
};

} // namespace llmc_gptq
