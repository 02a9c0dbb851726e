// One loaded plugin library: the mapping, its checked entry and a zero-padded copy of its
// descriptor. Held by shared_ptr; every instance co-owns it, so the library outlives them.
#pragma once

#include <llmc/plugin.h>
#include <nlohmann/json.hpp>

#include <boost/dll/shared_library.hpp>

#include <memory>
#include <string>

namespace llmc {

class plugin_library {
  public:
    // Loads with RTLD_NOW | RTLD_LOCAL and checks the entry; throws llmc::error naming the file
    // and the reason (no entry symbol, ABI mismatch, missing fields, bad params JSON, ...).
    static std::shared_ptr<plugin_library> load(const std::string &path);
    ~plugin_library();

    const std::string &path() const { return path_; }
    const llmc_modifier_descriptor_t &descriptor() const { return desc_; }
    const std::string &name() const { return name_; }
    const std::string &version() const { return version_; }
    const std::string &description() const { return description_; }
    // The parameter description (a JSON array) as published by the plugin.
    const nlohmann::json &params() const { return params_; }
    llmc_version_t abi_version() const { return desc_.abi_version; }

  private:
    plugin_library() = default;
    std::string path_;
    boost::dll::shared_library lib_;
    llmc_modifier_descriptor_t desc_{};
    std::string name_, version_, description_;
    nlohmann::json params_;
};

// Checks a descriptor's ABI version against the host's; returns "" when compatible, else why.
std::string abi_version_check(const llmc_version_t &plugin);

} // namespace llmc
