// The calibration activations between layers: one tensor per sample, in memory up to a byte
// budget and in a scratch file beyond it, so host memory does not grow with the dataset.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace llmc {

class activation_cache {
  public:
    // budget_bytes: how much stays in memory; spill_path: the scratch file for the rest
    // (created on first spill, removed by the destructor).
    activation_cache(uint64_t budget_bytes, std::string spill_path);
    ~activation_cache();
    activation_cache(const activation_cache &) = delete;
    activation_cache &operator=(const activation_cache &) = delete;

    void push(const at::Tensor &t);
    size_t size() const { return entries_.size(); }
    at::Tensor get(size_t i) const;
    // Replaces sample i with a tensor of the same shape and dtype (the next layer's input).
    void set(size_t i, const at::Tensor &t);
    uint64_t memory_bytes() const { return memory_bytes_; }
    uint64_t spilled_bytes() const { return spilled_bytes_; }

  private:
    struct entry {
        at::Tensor mem;          // defined when in memory
        int64_t offset = -1;     // in the spill file otherwise
        std::vector<int64_t> shape;
        at::ScalarType dtype = at::kFloat;
        uint64_t nbytes = 0;
    };
    void write_at(int64_t offset, const at::Tensor &t) const;

    uint64_t budget_;
    std::string path_;
    std::FILE *file_ = nullptr;
    std::vector<entry> entries_;
    uint64_t memory_bytes_ = 0, spilled_bytes_ = 0;
};

} // namespace llmc
