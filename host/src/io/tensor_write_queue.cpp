#include "io/tensor_write_queue.h"

#include "util/error.h"

#include <algorithm>

namespace llmc {

tensor_write_queue::tensor_write_queue(safetensors_sharded_writer &out, uint64_t max_queued_bytes)
    : out_(out), max_bytes_(max_queued_bytes), thread_([this] { run(); }) {}

tensor_write_queue::~tensor_write_queue() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        queue_.clear();
        queued_bytes_ = 0;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void tensor_write_queue::rethrow_locked() {
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr; // reported once
        std::rethrow_exception(e);
    }
}

void tensor_write_queue::push(const std::string &name, const at::Tensor &t, const std::string &dtype) {
    // Made contiguous here: the writer thread must only copy bytes, never run ATen's parallel ops
    // (they would start a thread team of their own).
    at::Tensor c = t.defined() ? t.detach().contiguous() : t;
    const uint64_t bytes = c.defined() ? static_cast<uint64_t>(c.nbytes()) : 0;
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return error_ || queue_.empty() || queued_bytes_ + bytes <= max_bytes_; });
    rethrow_locked();
    queue_.push_back({name, dtype, std::move(c)});
    queued_bytes_ += bytes;
    lock.unlock();
    changed_.notify_all();
}

void tensor_write_queue::finish() {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return error_ || (queue_.empty() && !busy_ && !copying_); });
    rethrow_locked();
}

// A piece of the deferred copies (add_deferred): small enough that a tensor pushed meanwhile
// waits little, so what is queued stays short while a large input tensor is copied.
constexpr uint64_t copy_piece_bytes = uint64_t{8} << 20;

void tensor_write_queue::run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        changed_.wait(lock, [&] { return closing_ || (!error_ && (!queue_.empty() || copying_)); });
        if (closing_) return;
        if (queue_.empty()) {
            busy_ = true;
            lock.unlock();
            std::exception_ptr failed;
            uint64_t left = 0;
            try {
                left = out_.copy_pending(copy_piece_bytes);
            } catch (...) {
                failed = std::current_exception();
            }
            lock.lock();
            busy_ = false;
            copying_ = left > 0 && !failed;
            if (failed) error_ = failed;
            changed_.notify_all();
            continue;
        }
        item it = std::move(queue_.front());
        queue_.pop_front();
        // The bound is on what waits: the tensor being written no longer holds up pushes.
        queued_bytes_ -= std::min<uint64_t>(queued_bytes_, it.tensor.defined() ? it.tensor.nbytes() : 0);
        busy_ = true;
        lock.unlock();
        std::exception_ptr failed;
        uint64_t left = 0;
        try {
            if (!it.tensor.defined()) fail("cannot save: tensor '{}' has no data", it.name);
            // A tensor still in its input file is copied from there in pieces between the next
            // ones (above), instead of holding them up while memory fills behind it.
            out_.add_deferred(it.name, it.tensor, it.dtype);
            left = out_.copy_pending(0);
        } catch (...) {
            failed = std::current_exception();
        }
        it = item{}; // a view of the input may run its deleter here: not under the lock
        lock.lock();
        busy_ = false;
        copying_ = left > 0 && !failed;
        if (failed) {
            error_ = failed;
            queue_.clear(); // nothing after a failed write is worth writing
            queued_bytes_ = 0;
        }
        changed_.notify_all();
    }
}

} // namespace llmc
