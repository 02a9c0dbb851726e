#include "util/cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <list>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace llmc {

namespace {

constexpr size_t huge_page = size_t{2} << 20;
constexpr size_t header_bytes = 64; // keeps c10's 64-byte alignment of the data

// Every block starts with a header just before its data, so the deleter needs only the data
// pointer (LibTorch's raw_deleter contract).
enum class block_kind : uint32_t { heap, mapping, chunk };
struct block_header {
    void *base;      // what malloc or mmap returned; the block's start in a chunk
    size_t size;     // mapping length; the block's length in a chunk; 0 for malloc'd blocks
    block_kind kind;
};
static_assert(sizeof(block_header) <= header_bytes, "header must fit before the data");

std::atomic<uint64_t> large_blocks{0};

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Freed mappings kept for reuse, newest first. A run allocates the same shapes layer after
// layer, so exact lengths match; a reused block is already backed, where a new one is zeroed and
// faulted in again (under virtualisation the host backs it afresh too). Bounded, the oldest
// unmapped first, so memory stays flat whatever the model's depth and lengths no longer asked
// for leave.
constexpr size_t cache_limit_bytes = size_t{256} << 20;
struct cached_block {
    size_t size; // mapping length
    void *data;
};
std::mutex cache_mu;
std::list<cached_block> cache; // a few hundred at most: searched in order
size_t cached_bytes = 0;
std::atomic<uint64_t> reused_blocks{0};

// Blocks of cpu_allocator_mid_bytes up to cpu_allocator_large_bytes: carved from chunks of
// huge pages, never returned, reused by length. From glibc's heap they came in 4 KiB pages,
// faulted in one by one (the heap is trimmed and grown again as layers come and go); an NVFP4
// export allocates its group scales, a sixteenth of the weights, in such blocks, and those faults
// were a fifth of its run. Lengths are multiples of mid_step, so a freed block serves any later
// request of its step; the chunks' total is capped (beyond it, malloc again).
constexpr size_t mid_step = size_t{64} << 10;
constexpr size_t chunk_bytes = size_t{32} << 20;
constexpr size_t chunks_limit_bytes = size_t{1} << 30;
constexpr size_t mid_steps = (cpu_allocator_large_bytes + header_bytes + mid_step - 1) / mid_step;
struct chunk_state {
    std::mutex mu;
    std::vector<void *> freed[mid_steps + 1]; // freed blocks' data by length / mid_step
    char *next = nullptr, *end = nullptr;     // the current chunk's uncarved rest
    size_t bytes = 0;                         // all chunks'
};
// Never destroyed: tensors may be freed during static destruction, after a static would be gone.
chunk_state &chunks() {
    static chunk_state *state = new chunk_state();
    return *state;
}
std::atomic<uint64_t> chunk_blocks{0};

// A new chunk of huge pages (2 MiB-aligned, advised; where the kernel has none it backs small
// ones) as the current one. Under c.mu.
bool chunk_new(chunk_state &c) {
    if (c.bytes + chunk_bytes > chunks_limit_bytes) return false;
    const size_t want = chunk_bytes + huge_page;
    void *raw = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return false;
    char *base = static_cast<char *>(raw);
    char *begin = reinterpret_cast<char *>(round_up(reinterpret_cast<uintptr_t>(base), huge_page));
    if (begin > base) ::munmap(base, static_cast<size_t>(begin - base));
    char *end = begin + chunk_bytes;
    if (base + want > end) ::munmap(end, static_cast<size_t>(base + want - end));
    ::madvise(begin, chunk_bytes, MADV_HUGEPAGE);
    c.next = begin;
    c.end = end;
    c.bytes += chunk_bytes;
    return true;
}

// A block for n bytes of data from the chunks, or null (the cap reached, no memory).
void *chunk_block(size_t n) {
    const size_t len = round_up(n + header_bytes, mid_step);
    chunk_state &c = chunks();
    std::lock_guard<std::mutex> lock(c.mu);
    auto &freed = c.freed[len / mid_step];
    if (!freed.empty()) {
        void *data = freed.back();
        freed.pop_back();
        return data;
    }
    // The current chunk's rest, when shorter than the block, is dropped: less than 1 MiB + 64 KiB
    // of each 32 MiB.
    if ((c.next == nullptr || static_cast<size_t>(c.end - c.next) < len) && !chunk_new(c)) return nullptr;
    char *start = c.next;
    c.next += len;
    auto *h = reinterpret_cast<block_header *>(start);
    h->base = start;
    h->size = len;
    h->kind = block_kind::chunk;
    ++chunk_blocks;
    return start + header_bytes;
}

void unmap_block(void *data) {
    const auto *h = reinterpret_cast<const block_header *>(static_cast<char *>(data) - header_bytes);
    ::munmap(h->base, h->size);
}

void free_block(void *data) {
    if (data == nullptr) return;
    const auto *h = reinterpret_cast<const block_header *>(static_cast<char *>(data) - header_bytes);
    if (h->kind == block_kind::heap) {
        std::free(h->base);
        return;
    }
    if (h->kind == block_kind::chunk) {
        chunk_state &c = chunks();
        std::lock_guard<std::mutex> lock(c.mu);
        c.freed[h->size / mid_step].push_back(data);
        return;
    }
    if (h->size > cache_limit_bytes) {
        ::munmap(h->base, h->size);
        return;
    }
    std::vector<void *> evicted;
    {
        std::lock_guard<std::mutex> lock(cache_mu);
        cache.push_front({h->size, data});
        cached_bytes += h->size;
        while (cached_bytes > cache_limit_bytes) {
            evicted.push_back(cache.back().data);
            cached_bytes -= cache.back().size;
            cache.pop_back();
        }
    }
    for (void *d : evicted) unmap_block(d); // outside the lock
}

// The newest cached block whose mapping is exactly `size` long, or null.
void *reuse_block(size_t size) {
    std::lock_guard<std::mutex> lock(cache_mu);
    for (auto it = cache.begin(); it != cache.end(); ++it) {
        if (it->size != size) continue;
        void *data = it->data;
        cache.erase(it);
        cached_bytes -= size;
        ++reused_blocks;
        return data;
    }
    return nullptr;
}

// Own mapping: one page for the header, then the data. Blocks of a huge page or more start on a
// huge-page boundary (the kernel only backs aligned 2 MiB spans with huge pages); the slack
// around is unmapped again.
void *map_block(size_t n) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t body = round_up(n, page);
    if (void *data = reuse_block(page + body)) return data;
    const bool huge = n >= huge_page;
    const size_t want = page + body + (huge ? huge_page : 0);
    void *raw = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char *base = static_cast<char *>(raw);
    char *data = base + page;
    if (huge) {
        data = reinterpret_cast<char *>(round_up(reinterpret_cast<uintptr_t>(base) + page, huge_page));
        char *keep_begin = data - page, *keep_end = data + body, *end = base + want;
        if (keep_begin > base) ::munmap(base, static_cast<size_t>(keep_begin - base));
        if (end > keep_end) ::munmap(keep_end, static_cast<size_t>(end - keep_end));
        base = keep_begin;
        // Advice only: where the kernel has no huge page at hand it uses small ones.
        ::madvise(data, body, MADV_HUGEPAGE);
    }
    auto *h = reinterpret_cast<block_header *>(data - header_bytes);
    h->base = base;
    h->size = page + body;
    h->kind = block_kind::mapping;
    ++large_blocks;
    return data;
}

void *malloc_block(size_t n) {
    void *base = nullptr;
    if (::posix_memalign(&base, header_bytes, header_bytes + n) != 0) return nullptr;
    char *data = static_cast<char *>(base) + header_bytes;
    auto *h = reinterpret_cast<block_header *>(base);
    h->base = base;
    h->size = 0;
    h->kind = block_kind::heap;
    return data;
}

class host_cpu_allocator final : public c10::Allocator {
  public:
    c10::DataPtr allocate(size_t n) const override {
        if (n == 0) return {nullptr, nullptr, &free_block, c10::Device(c10::DeviceType::CPU)};
        void *data = n >= cpu_allocator_large_bytes ? map_block(n) : nullptr;
        if (data == nullptr && n >= cpu_allocator_mid_bytes && n < cpu_allocator_large_bytes) data = chunk_block(n);
        if (data == nullptr && n < cpu_allocator_large_bytes) data = malloc_block(n);
        TORCH_CHECK(data != nullptr, "llmc: out of memory allocating ", n, " bytes");
        return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
    }
    c10::DeleterFnPtr raw_deleter() const override { return &free_block; }
};

} // namespace

void cpu_allocator_install() {
    static std::once_flag once;
    std::call_once(once, [] {
        static host_cpu_allocator allocator;
        // Above the default's priority (0), so nothing later replaces it by accident.
        c10::SetCPUAllocator(&allocator, 1);
    });
}

at::Tensor cpu_empty_cached(at::IntArrayRef sizes, at::ScalarType dtype) {
    int64_t numel = 1;
    for (int64_t d : sizes) numel *= d;
    const size_t n = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (n == 0) return at::empty(sizes, at::TensorOptions().dtype(dtype));
    // Middle sizes from the chunks of huge pages, the rest in mappings of their own.
    void *data = n >= cpu_allocator_mid_bytes && n < cpu_allocator_large_bytes ? chunk_block(n) : nullptr;
    if (data == nullptr) data = map_block(n);
    TORCH_CHECK(data != nullptr, "llmc: out of memory allocating ", n, " bytes");
    return at::from_blob(data, sizes, [](void *p) { free_block(p); }, at::TensorOptions().dtype(dtype));
}

cpu_allocator_stats cpu_allocator_stats_get() {
    return {large_blocks.load(), reused_blocks.load(), chunk_blocks.load()};
}

} // namespace llmc
