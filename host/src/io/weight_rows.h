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

// Those passes' loop: blocks of `block` rows of x (2-D, contiguous) spread over the work pool,
// each thread taking one block at a time as it comes free (not an even split up front: the writer
// thread takes a core now and then, and would leave the other thread waiting at the end). A
// block's rows are read through `read` (if set) into the thread's buffer, from a reused mapping,
// else taken from x itself. fn(worker, r0, r1, rows) gets the worker's index (below
// work_pool_threads()) for its own scratch; returning false stops every worker, and the result is
// then false.
bool weight_row_blocks(const at::Tensor &x, int64_t block,
                       const std::function<bool(int64_t r0, int64_t r1, void *dst)> &read,
                       const std::function<bool(int worker, int64_t r0, int64_t r1, const at::Tensor &rows)> &fn);

} // namespace llmc
