#include "io/file_regions.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <vector>

namespace llmc {

namespace {

struct region {
    size_t size;
    int fd;
};

std::mutex regions_mutex;
std::map<uintptr_t, region> regions; // by base address

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
constexpr uint64_t pm_present = 1ull << 63, pm_swapped = 1ull << 62, pm_file = 1ull << 61;

// /proc/self/pagemap, kept open for the process, or -1 where it cannot be read or does not tell
// the truth: a page this process just wrote must show as present and not a file page (a
// sandbox that answers zeros would make every written page look clean).
int pagemap_fd() {
    static const int fd = [] {
        const int f = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (f < 0) return -1;
        const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
        void *probe = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        bool truthful = false;
        if (probe != MAP_FAILED) {
            *static_cast<volatile char *>(probe) = 1;
            uint64_t e = 0;
            const off_t off = static_cast<off_t>(reinterpret_cast<uintptr_t>(probe) / page * sizeof(e));
            truthful = ::pread(f, &e, sizeof(e), off) == sizeof(e) && (e & pm_present) && !(e & pm_file);
            ::munmap(probe, page);
        }
        if (!truthful) {
            ::close(f);
            return -1;
        }
        return f;
    }();
    return fd;
}

// True when every page of [begin, end) (page-aligned) is either not present (never faulted in,
// or a clean page dropped: both read back from the file) or present as a file page. A written
// page of a private mapping is an anonymous copy, present or swapped.
bool pages_clean(uintptr_t begin, uintptr_t end, uintptr_t page) {
    const int fd = pagemap_fd();
    if (fd < 0) return false;
    std::vector<uint64_t> entries(4096);
    for (uintptr_t at = begin; at < end;) {
        const size_t n = std::min<size_t>(entries.size(), (end - at) / page);
        const off_t off = static_cast<off_t>(at / page * sizeof(uint64_t));
        const ssize_t got = ::pread(fd, entries.data(), n * sizeof(uint64_t), off);
        if (got != static_cast<ssize_t>(n * sizeof(uint64_t))) return false;
        for (size_t i = 0; i < n; ++i) {
            const uint64_t e = entries[i];
            if ((e & pm_swapped) || ((e & pm_present) && !(e & pm_file))) return false;
        }
        at += n * page;
    }
    return true;
}

} // namespace

void file_regions_add(const void *base, size_t size, int fd) {
    std::lock_guard<std::mutex> lock(regions_mutex);
    regions[reinterpret_cast<uintptr_t>(base)] = {size, fd};
}

void file_regions_remove(const void *base) {
    std::lock_guard<std::mutex> lock(regions_mutex);
    regions.erase(reinterpret_cast<uintptr_t>(base));
}

std::optional<file_range> file_range_clean(const void *data, size_t size) {
    if (data == nullptr || size == 0) return std::nullopt;
    const uintptr_t a = reinterpret_cast<uintptr_t>(data);
    uintptr_t base = 0;
    region r{};
    {
        std::lock_guard<std::mutex> lock(regions_mutex);
        auto it = regions.upper_bound(a);
        if (it == regions.begin()) return std::nullopt;
        --it;
        base = it->first;
        r = it->second;
    }
    if (a + size < a || a + size > base + r.size) return std::nullopt;
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = a & ~(page - 1), end = (a + size + page - 1) & ~(page - 1);
    if (!pages_clean(begin, end, page)) return std::nullopt;
    return file_range{r.fd, static_cast<uint64_t>(a - base)};
}

} // namespace llmc
