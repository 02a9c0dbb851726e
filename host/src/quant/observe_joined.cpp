#include "quant/observe_joined.h"

#include "io/weight_rows.h"
#include "quant/minmax_fast.h"
#include "util/cpu_allocator.h"
#include "util/error.h"
#include "util/work_pool.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>

namespace llmc::quant {

namespace {

// Whether the group minima and maxima of each weight, taken on their own, are the observer's
// statistics of the concatenation (they are, row by row, for group-like strategies), and the
// blockwise loop below serves the weights.
bool blockwise(const quant_args &a, const std::vector<at::Tensor> &ws) {
    if (a.dynamic != dynamic_kind::static_ || !a.strategy || !a.group_size || *a.group_size <= 0) return false;
    if (*a.strategy != quant_strategy::group && *a.strategy != quant_strategy::tensor_group) return false;
    if (a.actorder && canonical(*a.actorder) == actorder_kind::group) return false;
    const std::string kind = observer(a, observed_role::weight).kind();
    if (kind != "memoryless_minmax" && kind != "minmax" && kind != "static_minmax") return false;
    for (const at::Tensor &w : ws) {
        const at::ScalarType t = w.scalar_type();
        if (w.dim() != 2 || !w.is_contiguous() || !w.device().is_cpu() || w.numel() == 0) return false;
        if (t != ws.front().scalar_type() || (t != at::kFloat && t != at::kBFloat16 && t != at::kHalf)) return false;
        if (w.size(1) != ws.front().size(1) || w.size(1) % *a.group_size != 0) return false;
    }
    return true;
}

// Group minima and maxima of `w` into mn and mx (contiguous [rows, cols / group] of w's dtype:
// rows of the partner set's), in blocks of rows of ~256 KiB spread over the work pool, each read
// through `read` when it reads (weight_row_blocks).
void group_minmax(const at::Tensor &w, int64_t group, const row_reader &read, const at::Tensor &mn,
                  const at::Tensor &mx) {
    const int64_t groups = w.size(1) / group;
    const int64_t block = std::max<int64_t>(1, (int64_t{256} << 10) / (w.size(1) * w.element_size()));
    weight_row_blocks(w, block, read, [&](int, int64_t r0, int64_t r1, const at::Tensor &rows) {
        const int64_t n = (r1 - r0) * groups, first = r0 * groups;
        auto run = [&](auto *x, auto *lo, auto *hi) { minmax_rows_serial(x, n, group, lo + first, hi + first); };
        switch (w.scalar_type()) {
        case at::kFloat: run(rows.data_ptr<float>(), mn.data_ptr<float>(), mx.data_ptr<float>()); break;
        case at::kBFloat16:
            run(rows.data_ptr<c10::BFloat16>(), mn.data_ptr<c10::BFloat16>(), mx.data_ptr<c10::BFloat16>());
            break;
        default: run(rows.data_ptr<c10::Half>(), mn.data_ptr<c10::Half>(), mx.data_ptr<c10::Half>()); break;
        }
        return true;
    });
}

} // namespace

std::vector<qparams> qparams_observe_joined(const quant_args &args, const std::vector<at::Tensor> &weights,
                                            const std::vector<row_reader> &reads) {
    if (weights.empty()) return {};
    observer obs(args, observed_role::weight);
    std::optional<serial_aten_ops> small;
    if (blockwise(args, weights)) {
        // The partners' rows one after another, as in their concatenation.
        int64_t rows = 0;
        for (const at::Tensor &w : weights) rows += w.size(0);
        const int64_t groups = weights.front().size(1) / *args.group_size;
        const at::ScalarType dtype = weights.front().scalar_type();
        const at::Tensor mn = cpu_empty_cached({rows, groups}, dtype), mx = cpu_empty_cached({rows, groups}, dtype);
        int64_t row = 0;
        for (size_t i = 0; i < weights.size(); ++i) {
            const int64_t end = row + weights[i].size(0);
            group_minmax(weights[i], *args.group_size, i < reads.size() ? reads[i] : row_reader(),
                         mn.slice(0, row, end), mx.slice(0, row, end));
            row = end;
        }
        small.emplace(); // from here on tensors of one value per group
        // What observe() folds for these groups: their minima and maxima and, for tensor_group,
        // the whole tensor's range taken from them.
        at::Tensor gmin, gmax;
        if (*args.strategy == quant_strategy::tensor_group) {
            gmin = at::amin(mn.reshape({1, 1, -1}), {0, -1});
            gmax = at::amax(mx.reshape({1, 1, -1}), {0, -1});
        }
        obs.set_stats(mn, mx, gmin, gmax);
    } else {
        obs.observe(weights.size() == 1 ? weights.front() : at::cat(weights, 0));
    }
    const qparams all = obs.get_qparams();
    if (weights.size() == 1) return {all};
    int64_t total = 0;
    for (const at::Tensor &w : weights) total += w.dim() > 0 ? w.size(0) : 1;
    if (all.scale.dim() == 0 || all.scale.size(0) != total)
        fail("weights observed together need one scale per row or group of a row ({} strategy gives {})",
             to_string(*args.strategy), c10::str(all.scale.sizes()));
    std::vector<qparams> out;
    int64_t row = 0;
    for (const at::Tensor &w : weights) {
        const int64_t rows = w.dim() > 0 ? w.size(0) : 1;
        qparams q;
        q.scale = all.scale.slice(0, row, row + rows);
        if (all.zero_point.defined()) q.zero_point = all.zero_point.slice(0, row, row + rows);
        q.global_scale = all.global_scale;
        out.push_back(std::move(q));
        row += rows;
    }
    return out;
}

} // namespace llmc::quant
