#include "io/weight_rows.h"

#include "io/file_regions.h"
#include "util/cpu_allocator.h"
#include "util/work_pool.h"

#include <algorithm>
#include <atomic>

#include <unistd.h>

namespace llmc {

std::function<bool(int64_t r0, int64_t r1, void *dst)> weight_rows_reader(const at::Tensor &weight) {
    if (weight.dim() != 2 || !weight.is_contiguous() || !weight.device().is_cpu() || weight.numel() == 0) return {};
    const auto src = file_range_clean(weight.data_ptr(), weight.nbytes());
    if (!src) return {};
    const uint64_t row_bytes = static_cast<uint64_t>(weight.size(1)) * weight.element_size();
    return [src = *src, row_bytes](int64_t r0, int64_t r1, void *dst) {
        const uint64_t want = static_cast<uint64_t>(r1 - r0) * row_bytes;
        uint64_t done = 0;
        while (done < want) {
            const ssize_t n = ::pread(src.fd, static_cast<char *>(dst) + done, want - done,
                                      static_cast<off_t>(src.offset + static_cast<uint64_t>(r0) * row_bytes + done));
            if (n <= 0) return false;
            done += static_cast<uint64_t>(n);
        }
        return true;
    };
}

bool weight_row_blocks(const at::Tensor &x, int64_t block,
                       const std::function<bool(int64_t r0, int64_t r1, void *dst)> &read,
                       const std::function<bool(int worker, int64_t r0, int64_t r1, const at::Tensor &rows)> &fn) {
    const int64_t rows = x.size(0), blocks = (rows + block - 1) / block;
    std::atomic<int64_t> next{0};
    std::atomic<bool> stopped{false};
    const int workers = static_cast<int>(std::min<int64_t>(work_pool_threads(), blocks));
    work_pool_run(workers, [&](int worker) {
        at::Tensor buffer;
        for (int64_t b = next++; b < blocks && !stopped; b = next++) {
            const int64_t r0 = b * block, r1 = std::min(rows, r0 + block);
            at::Tensor part = x.slice(0, r0, r1);
            if (read) {
                if (!buffer.defined()) buffer = cpu_empty_cached({block, x.size(1)}, x.scalar_type());
                if (read(r0, r1, buffer.data_ptr())) part = buffer.slice(0, 0, r1 - r0);
            }
            if (!fn(worker, r0, r1, part)) stopped = true;
        }
    });
    return !stopped;
}

} // namespace llmc
