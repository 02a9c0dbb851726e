// Rows of a weight that is still its checkpoint's bytes, taken from the file with pread into a
// buffer that stays in cache, not through the mapping (io/file_regions.h says why). For the
// passes that read every weight once: the exporter's and the host's weight observation.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace llmc {

// Reads rows [r0, r1) of `weight` into dst (their bytes, contiguous) and returns true, or returns
// false when the file cannot serve them (the mapping still has the bytes). Empty for a weight that
// is not a contiguous 2-D CPU tensor with elements lying in an unmodified file mapping. The weight
// must stay unwritten while the reader is used.
std::function<bool(int64_t r0, int64_t r1, void *dst)> weight_rows_reader(const at::Tensor &weight);

} // namespace llmc
