// DLPack <-> at::Tensor for plugins that compute with LibTorch (link Torch: llmc_add_plugin(... TORCH)).
// Only ATen API that LibTorch 1.13 and 2.x share is used.
#pragma once

#include <ATen/ATen.h>
#include <ATen/DLConvertor.h>
#include <llmc/sdk/host.hpp>

#include <vector>

namespace llmc::sdk {

// Takes ownership of a host-produced tensor; the deleter runs when the last at::Tensor goes.
inline at::Tensor to_tensor(dlpack_ptr p) {
    if (!p) return at::Tensor();
    return at::fromDLPack(p.release());
}

// A non-owning at::Tensor over a borrowed DLTensor (valid as long as the DLTensor is).
inline at::Tensor borrow_tensor(const DLTensor &t) {
    std::vector<int64_t> sizes(t.shape, t.shape + t.ndim);
    auto options = at::TensorOptions().dtype(at::toScalarType(t.dtype)).device(at::kCPU);
    void *data = static_cast<char *>(t.data) + t.byte_offset;
    if (t.strides == nullptr) return at::from_blob(data, sizes, options);
    std::vector<int64_t> strides(t.strides, t.strides + t.ndim);
    return at::from_blob(data, sizes, strides, options);
}

// A DLTensor view of an at::Tensor to pass into a host call (borrowed by the host for the call).
class dl_view {
  public:
    explicit dl_view(const at::Tensor &t) : m_(at::toDLPack(t)) {}
    ~dl_view() {
        if (m_ != nullptr && m_->deleter != nullptr) m_->deleter(m_);
    }
    dl_view(const dl_view &) = delete;
    dl_view &operator=(const dl_view &) = delete;
    const DLTensor &get() const { return m_->dl_tensor; }
    operator const DLTensor &() const { return m_->dl_tensor; }

  private:
    DLManagedTensor *m_;
};

// Tensor access through the host's model view.
inline at::Tensor tensor_get(const host_ref &h, const std::string &module, const std::string &name) {
    return to_tensor(h.tensor_get(module, name));
}
inline void tensor_set(const host_ref &h, const std::string &module, const std::string &name, const at::Tensor &t) {
    dl_view v(t.contiguous());
    h.tensor_set(module, name, v.get());
}

} // namespace llmc::sdk
