#include "model/module.h"

#include "util/error.h"

#include <atomic>

namespace llmc {

namespace {
// Ids are unique across all modules, so removing with a foreign id never hits another hook.
std::atomic<uint64_t> next_hook_id{1};
} // namespace

module::module(std::string class_name) : class_name_(std::move(class_name)) {}

module::~module() = default;

module *module::child(const std::string &local_name) const {
    for (const auto &[n, m] : children_)
        if (n == local_name)
            return m.get();
    return nullptr;
}

void module::adopt(const std::string &local_name, std::unique_ptr<module> m) {
    if (!m)
        fail("module '{}': null child '{}'", name_, local_name);
    if (local_name.empty() || local_name.find('.') != std::string::npos)
        fail("module '{}': invalid child name '{}'", name_, local_name);
    if (child(local_name))
        fail("module '{}': child '{}' registered twice", name_, local_name);
    m->parent_ = this;
    m->switch_ = switch_;
    children_.emplace_back(local_name, std::move(m));
}

at::Tensor module::call(const std::vector<at::Tensor> &inputs) {
    // A tree that was never finalized has no switch: its hooks always run.
    const bool hooks_on = !switch_ || switch_->enabled;
    if (hooks_on && !pre_hooks_.empty()) {
        // Copy first: a hook may add or remove hooks while we iterate.
        auto hooks = pre_hooks_;
        for (auto &[id, fn] : hooks)
            fn(*this, inputs);
    }
    at::Tensor out = forward(inputs);
    if (hooks_on && !post_hooks_.empty()) {
        auto hooks = post_hooks_;
        for (auto &[id, fn] : hooks)
            fn(*this, inputs, out);
    }
    return out;
}

uint64_t module::add_pre_hook(module_pre_hook fn) {
    const uint64_t id = next_hook_id++;
    pre_hooks_.emplace_back(id, std::move(fn));
    return id;
}

uint64_t module::add_post_hook(module_post_hook fn) {
    const uint64_t id = next_hook_id++;
    post_hooks_.emplace_back(id, std::move(fn));
    return id;
}

bool module::remove_hook(uint64_t id) {
    for (auto it = pre_hooks_.begin(); it != pre_hooks_.end(); ++it)
        if (it->first == id) {
            pre_hooks_.erase(it);
            return true;
        }
    for (auto it = post_hooks_.begin(); it != post_hooks_.end(); ++it)
        if (it->first == id) {
            post_hooks_.erase(it);
            return true;
        }
    return false;
}

void module::finalize_tree(std::shared_ptr<hook_switch> sw) {
    set_names(parent_ ? name_ : std::string());
    walk([&](module &m) { m.switch_ = sw; });
}

void module::set_names(const std::string &prefix) {
    name_ = prefix;
    for (auto &[local, m] : children_)
        m->set_names(prefix.empty() ? local : prefix + "." + local);
}

void module::walk(const std::function<void(module &)> &fn) {
    fn(*this);
    for (auto &[local, m] : children_)
        m->walk(fn);
}

} // namespace llmc
