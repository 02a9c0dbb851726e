// Writes tensors to a safetensors_sharded_writer on a thread of its own, so that the file writes
// (copies into the page cache, a third of a data-free export) overlap with compressing the next
// module instead of following it. A large tensor still in its input file (the embeddings) is
// copied from that file in pieces whenever the queue is empty (add_deferred), so the tensors
// pushed after it are written without waiting for the whole copy.
#pragma once

#include "io/safetensors.h"

#include <ATen/ATen.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

namespace llmc {

class tensor_write_queue {
  public:
    // `out` must outlive the queue. At most `max_queued_bytes` of tensors wait behind the one
    // being written (a push beyond it blocks), so memory stays bounded; one tensor larger than
    // that still goes through alone.
    tensor_write_queue(safetensors_sharded_writer &out, uint64_t max_queued_bytes);
    // Without finish() (an error elsewhere): what is queued is dropped and the thread stopped.
    ~tensor_write_queue();
    tensor_write_queue(const tensor_write_queue &) = delete;
    tensor_write_queue &operator=(const tensor_write_queue &) = delete;

    // Queues `t` under `name`; an empty dtype writes the tensor's own. The tensor is kept alive
    // (not copied) until written: the caller must not change it afterwards. Rethrows the error
    // of an earlier write, if one failed.
    void push(const std::string &name, const at::Tensor &t, const std::string &dtype = "");
    // Waits until everything queued is written; rethrows a write's error.
    void finish();

  private:
    struct item {
        std::string name, dtype;
        at::Tensor tensor;
    };
    void run();
    void rethrow_locked();

    safetensors_sharded_writer &out_;
    const uint64_t max_bytes_;
    std::mutex mu_;
    std::condition_variable changed_;
    std::deque<item> queue_;
    uint64_t queued_bytes_ = 0;
    bool closing_ = false, busy_ = false;
    bool copying_ = false; // the writer has deferred copies to finish (add_deferred)
    std::exception_ptr error_;
    std::thread thread_;
};

} // namespace llmc
