// Which memory is a still-unmodified private mapping of a file. Readers of such memory can take
// the bytes from the file instead: pread into a cache-sized buffer, or copy_file_range between
// files. Both are much faster than reading through the mapping itself, whose 4 KiB pages cost a
// TLB miss each (several times a buffered read's cost under virtualisation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace llmc {

struct file_range {
    int fd = -1;          // open for reading while the registered mapping lives
    uint64_t offset = 0;  // of the first byte
};

// Registers [base, base + size) as a MAP_PRIVATE mapping of fd from offset 0. The caller keeps
// fd open and the mapping in place until file_regions_remove(base).
void file_regions_add(const void *base, size_t size, int fd);
void file_regions_remove(const void *base);

// Where in a file [data, data + size) lies, if it lies in one registered mapping and none of its
// pages was written (every present page is still the file's page, none is swapped out:
// /proc/self/pagemap). nullopt when not, or when that cannot be told. Reading the range from the
// file then gives exactly the bytes in memory, as long as nobody writes it meanwhile.
std::optional<file_range> file_range_clean(const void *data, size_t size);

} // namespace llmc
