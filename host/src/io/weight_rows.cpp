#include "io/weight_rows.h"

#include "io/file_regions.h"

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

} // namespace llmc
