#include "session/activation_cache.h"

#include "util/error.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace llmc {

activation_cache::activation_cache(uint64_t budget_bytes, std::string spill_path)
    : budget_(budget_bytes), path_(std::move(spill_path)) {}

activation_cache::~activation_cache() {
    if (file_ != nullptr) {
        std::fclose(file_);
        ::unlink(path_.c_str());
    }
}

void activation_cache::push(const at::Tensor &t) {
    at::Tensor c = t.contiguous();
    entry e;
    e.shape = c.sizes().vec();
    e.dtype = c.scalar_type();
    e.nbytes = c.numel() * c.element_size();
    if (memory_bytes_ + e.nbytes <= budget_) {
        e.mem = c.clone();
        memory_bytes_ += e.nbytes;
    } else {
        if (file_ == nullptr) {
            file_ = std::fopen(path_.c_str(), "w+b");
            if (file_ == nullptr) fail("activation spill file {}: {}", path_, std::strerror(errno));
        }
        e.offset = static_cast<int64_t>(spilled_bytes_);
        write_at(e.offset, c);
        spilled_bytes_ += e.nbytes;
    }
    entries_.push_back(std::move(e));
}

void activation_cache::write_at(int64_t offset, const at::Tensor &t) const {
    const size_t n = t.numel() * t.element_size();
    if (::pwrite(fileno(file_), t.data_ptr(), n, offset) != static_cast<ssize_t>(n))
        fail("activation spill file {}: write failed: {}", path_, std::strerror(errno));
}

at::Tensor activation_cache::get(size_t i) const {
    const entry &e = entries_.at(i);
    if (e.mem.defined()) return e.mem;
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    if (::pread(fileno(file_), t.data_ptr(), e.nbytes, e.offset) != static_cast<ssize_t>(e.nbytes))
        fail("activation spill file {}: read failed: {}", path_, std::strerror(errno));
    return t;
}

void activation_cache::set(size_t i, const at::Tensor &t) {
    entry &e = entries_.at(i);
    at::Tensor c = t.contiguous();
    if (c.sizes().vec() != e.shape || c.scalar_type() != e.dtype)
        fail("activation cache: sample {} changes shape or dtype", i);
    if (e.mem.defined())
        e.mem = c;
    else
        write_at(e.offset, c);
}

} // namespace llmc
