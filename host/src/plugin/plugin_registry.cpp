#include "plugin/plugin_registry.h"

#include "util/error.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

namespace llmc {

namespace fs = std::filesystem;

static bool is_shared_library(const fs::path &p) {
    const std::string name = p.filename().string();
    return p.extension() == ".so" || name.find(".so.") != std::string::npos || p.extension() == ".dylib";
}

void plugin_registry::scan(const std::string &dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("plugins directory '{}' does not exist or is not a directory", dir);
    std::vector<fs::path> files;
    for (const auto &e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && is_shared_library(e.path())) files.push_back(e.path());
    if (ec) fail("plugins directory '{}': {}", dir, ec.message());
    std::sort(files.begin(), files.end());
    for (const auto &f : files) add(f.string());
}

void plugin_registry::add(const std::string &path) {
    std::shared_ptr<plugin_library> lib;
    try {
        lib = plugin_library::load(path);
    } catch (const error &e) {
        spdlog::warn("skipping {}", e.what());
        failures_.push_back({path, e.what()});
        return;
    }
    auto it = by_name_.find(lib->name());
    if (it != by_name_.end())
        fail("modifier '{}' is registered by two plugins: {} and {}", lib->name(), it->second->path(), path);
    spdlog::debug("loaded plugin {} {} from {}", lib->name(), lib->version(), path);
    by_name_[lib->name()] = lib;
}

std::shared_ptr<plugin_library> plugin_registry::find(const std::string &name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<plugin_library> plugin_registry::get(const std::string &name) const {
    auto lib = find(name);
    if (!lib) fail("unknown modifier '{}' (available: {})", name, available());
    return lib;
}

std::vector<std::shared_ptr<plugin_library>> plugin_registry::all() const {
    std::vector<std::shared_ptr<plugin_library>> out;
    for (const auto &kv : by_name_) out.push_back(kv.second);
    return out;
}

std::string plugin_registry::available() const {
    std::string s;
    for (const auto &kv : by_name_) s += (s.empty() ? "" : ", ") + kv.first;
    return s.empty() ? "none" : s;
}

} // namespace llmc
