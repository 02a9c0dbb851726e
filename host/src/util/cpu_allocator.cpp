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
struct block_header {
    void *base;  // what malloc or mmap returned
    size_t size; // mapping length; 0 for malloc'd blocks
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

void unmap_block(void *data) {
    const auto *h = reinterpret_cast<const block_header *>(static_cast<char *>(data) - header_bytes);
    ::munmap(h->base, h->size);
}

void free_block(void *data) {
    if (data == nullptr) return;
    const auto *h = reinterpret_cast<const block_header *>(static_cast<char *>(data) - header_bytes);
    if (h->size == 0) {
        std::free(h->base);
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
    return data;
}

class host_cpu_allocator final : public c10::Allocator {
  public:
    c10::DataPtr allocate(size_t n) const override {
        if (n == 0) return {nullptr, nullptr, &free_block, c10::Device(c10::DeviceType::CPU)};
        void *data = n >= cpu_allocator_large_bytes ? map_block(n) : malloc_block(n);
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
    void *data = map_block(n);
    TORCH_CHECK(data != nullptr, "llmc: out of memory allocating ", n, " bytes");
    return at::from_blob(data, sizes, [](void *p) { free_block(p); }, at::TensorOptions().dtype(dtype));
}

cpu_allocator_stats cpu_allocator_stats_get() {
    return {large_blocks.load(), reused_blocks.load()};
}

} // namespace llmc
