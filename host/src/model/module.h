// The module tree: Hugging Face names and class names over LibTorch tensors.
// Every module can carry forward pre/post hooks (the ABI's hook service sits on these).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llmc {

class module;

// Hooks observe; they never replace inputs or outputs. They may throw: the caller of
// module::call sees the exception (the host turns it into an error naming the module).
using module_pre_hook = std::function<void(module &, const std::vector<at::Tensor> &inputs)>;
using module_post_hook =
    std::function<void(module &, const std::vector<at::Tensor> &inputs, const at::Tensor &output)>;

// Shared by every module of one model: one switch turns all hooks on or off
// (on during calibration passes, off during propagation passes).
struct hook_switch {
    bool enabled = true;
};

class module {
  public:
    explicit module(std::string class_name);
    virtual ~module();
    module(const module &) = delete;
    module &operator=(const module &) = delete;

    // Full dotted Hugging Face name ("model.layers.3.self_attn.q_proj"); "" for the root.
    const std::string &name() const { return name_; }
    const std::string &class_name() const { return class_name_; }
    module *parent() const { return parent_; }

    // Children in registration order (which is Hugging Face's named_modules order).
    const std::vector<std::pair<std::string, std::unique_ptr<module>>> &children() const { return children_; }
    module *child(const std::string &local_name) const;
    template <class T> T *add_child(const std::string &local_name, std::unique_ptr<T> m) {
        T *raw = m.get();
        adopt(local_name, std::move(m));
        return raw;
    }

    // Parameters and named buffers by local name ("weight", "bias", "weight_scale"...).
    std::map<std::string, at::Tensor> params;
    std::map<std::string, at::Tensor> buffers;

    // Runs pre hooks, forward, post hooks (hooks only while the switch is on).
    at::Tensor call(const std::vector<at::Tensor> &inputs);

    uint64_t add_pre_hook(module_pre_hook fn);
    uint64_t add_post_hook(module_post_hook fn);
    bool remove_hook(uint64_t id);
    size_t hook_count() const { return pre_hooks_.size() + post_hooks_.size(); }

    // Called once on the root after the tree is built: fixes names and the hook switch.
    void finalize_tree(std::shared_ptr<hook_switch> sw);
    // Pre-order walk (the root first), as torch's named_modules().
    void walk(const std::function<void(module &)> &fn);

  protected:
    virtual at::Tensor forward(const std::vector<at::Tensor> &inputs) = 0;

  private:
    void adopt(const std::string &local_name, std::unique_ptr<module> m);
    void set_names(const std::string &prefix);

    std::string name_;
    std::string class_name_;
    module *parent_ = nullptr;
    std::vector<std::pair<std::string, std::unique_ptr<module>>> children_;
    std::vector<std::pair<uint64_t, module_pre_hook>> pre_hooks_;
    std::vector<std::pair<uint64_t, module_post_hook>> post_hooks_;
    std::shared_ptr<hook_switch> switch_;
};

} // namespace llmc
