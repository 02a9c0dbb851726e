// LibTorch's CPU allocator for the host process: large tensors in their own mappings backed by
// transparent huge pages where the kernel gives them, middle-sized ones in chunks of huge pages.
//
// Why: a compression run allocates and frees weight-sized tensors (packed outputs, converted
// weights, activations) once per module. Each comes back from the kernel zeroed and faulted in
// 4 KiB at a time; under virtualisation a page fault costs several microseconds, which made page
// faults the largest single cost of a data-free export. With huge pages a 2 MiB block is one
// fault, and freed blocks (up to a fixed total) are kept and handed out again for the same
// length, as the next layer asks for the same shapes. Beyond that total the oldest are unmapped,
// so memory stays flat across layers (as the fixed malloc mmap threshold of runtime_init_memory
// does for the rest).
//
// Middle-sized tensors (group scales, the codes of small modules) were faulted in 4 KiB at a time
// from glibc's heap, which is trimmed and grown again module after module: they come from 32 MiB
// chunks of huge pages instead, in 64 KiB steps, freed blocks reused by length and never unmapped
// (the chunks capped at 1 GiB in all; beyond it, malloc).
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

namespace llmc {

// Blocks of at least this many bytes get their own mapping; those of at least
// cpu_allocator_mid_bytes come from chunks of huge pages kept by the allocator; smaller ones
// from malloc.
constexpr size_t cpu_allocator_large_bytes = size_t{1} << 20;
constexpr size_t cpu_allocator_mid_bytes = size_t{64} << 10;

// Installs the allocator as LibTorch's CPU allocator (once; later calls do nothing). Tensors
// allocated before keep their own deleters.
void cpu_allocator_install();

// A contiguous CPU tensor that reuses freed memory whatever its size: in a mapping of its own (a
// freed one of the same length when the cache holds one), or for middle sizes a block of the
// chunks of huge pages. For the buffers a pass allocates per module with the same shapes layer
// after layer but below cpu_allocator_mid_bytes (the exporter's small row buffers and the packed
// results of small projections): from malloc they come back faulted in anew each time, as the
// heap is trimmed between modules.
at::Tensor cpu_empty_cached(at::IntArrayRef sizes, at::ScalarType dtype);

// What the allocator did since it was installed: large blocks given a new mapping, large
// blocks that reused a freed one, and middle-sized blocks carved anew from a chunk.
struct cpu_allocator_stats {
    uint64_t large_blocks = 0, reused_blocks = 0, chunk_blocks = 0;
};
cpu_allocator_stats cpu_allocator_stats_get();

} // namespace llmc
