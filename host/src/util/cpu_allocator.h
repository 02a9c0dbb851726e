// LibTorch's CPU allocator for the host process: large tensors in their own mappings backed by
// transparent huge pages where the kernel gives them.
//
// Why: a compression run allocates and frees weight-sized tensors (packed outputs, converted
// weights, activations) once per module. Each comes back from the kernel zeroed and faulted in
// 4 KiB at a time; under virtualisation a page fault costs several microseconds, which made page
// faults the largest single cost of a data-free export. With huge pages a 2 MiB block is one
// fault, and freed blocks (up to a fixed total) are kept and handed out again for the same
// length, as the next layer asks for the same shapes. Beyond that total the oldest are unmapped,
// so memory stays flat across layers (as the fixed malloc mmap threshold of runtime_init_memory
// does for the rest).
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

namespace llmc {

// Blocks of at least this many bytes get their own mapping; smaller ones come from malloc.
constexpr size_t cpu_allocator_large_bytes = size_t{1} << 20;

// Installs the allocator as LibTorch's CPU allocator (once; later calls do nothing). Tensors
// allocated before keep their own deleters.
void cpu_allocator_install();

// A contiguous CPU tensor in a mapping of its own whatever its size (a freed one of the same
// length when the cache holds one), freed into that cache. For the buffers a pass allocates per
// module with the same shapes layer after layer but below cpu_allocator_large_bytes (the
// exporter's row buffers and the packed results of the attention projections): from malloc
// they come back faulted in anew each time, as the heap is trimmed between modules.
at::Tensor cpu_empty_cached(at::IntArrayRef sizes, at::ScalarType dtype);

// What the allocator did since it was installed: large blocks given a new mapping, and large
// blocks that reused a freed one.
struct cpu_allocator_stats {
    uint64_t large_blocks = 0, reused_blocks = 0;
};
cpu_allocator_stats cpu_allocator_stats_get();

} // namespace llmc
