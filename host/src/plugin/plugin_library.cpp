#include "plugin/plugin_library.h"

#include "util/error.h"

#include <boost/dll/shared_library_load_mode.hpp>

#include <algorithm>
#include <cstring>

namespace llmc {

std::string abi_version_check(const llmc_version_t &v) {
    if (v.major != LLMC_ABI_VERSION_MAJOR || v.minor > LLMC_ABI_VERSION_MINOR)
        return fmt::format("built for ABI {}.{}.{}, this host supports {}.{} (same major, minor <= {})", v.major,
                           v.minor, v.patch, LLMC_ABI_VERSION_MAJOR, LLMC_ABI_VERSION_MINOR, LLMC_ABI_VERSION_MINOR);
    return "";
}

std::shared_ptr<plugin_library> plugin_library::load(const std::string &path) {
    std::shared_ptr<plugin_library> lib(new plugin_library());
    lib->path_ = path;
    namespace mode = boost::dll::load_mode;
    boost::system::error_code ec;
    lib->lib_.load(path, mode::rtld_now | mode::rtld_local, ec);
    if (ec) fail("plugin {}: cannot load: {}", path, ec.message());
    if (!lib->lib_.has(LLMC_PLUGIN_ENTRY_SYMBOL))
        fail("plugin {}: no entry symbol '{}' (is it an llmc plugin? export it with LLMC_DECLARE_MODIFIER)", path,
             LLMC_PLUGIN_ENTRY_SYMBOL);
    auto entry = lib->lib_.get<const llmc_modifier_descriptor_t *()>(LLMC_PLUGIN_ENTRY_SYMBOL);
    const llmc_modifier_descriptor_t *d = nullptr;
    try {
        d = entry();
    } catch (...) {
        // The entry is C; a C++ plugin whose entry throws broke the contract. Report, do not die.
        fail("plugin {}: entry function threw an exception", path);
    }
    if (d == nullptr) fail("plugin {}: entry function returned NULL", path);
    const size_t header = offsetof(llmc_modifier_descriptor_t, abi_version) + sizeof(llmc_version_t);
    if (d->struct_size < header) fail("plugin {}: descriptor struct_size {} is too small", path, d->struct_size);
    if (d->struct_size < offsetof(llmc_modifier_descriptor_t, on_calibration_end) + sizeof(void *))
        fail("plugin {}: descriptor struct_size {} is smaller than the ABI 1.0 descriptor ({} bytes)", path,
             d->struct_size, offsetof(llmc_modifier_descriptor_t, on_calibration_end) + sizeof(void *));
    std::string why = abi_version_check(d->abi_version);
    if (!why.empty()) fail("plugin {}: {}", path, why);
    // Copy what the plugin filled into a zeroed struct: fields it does not know read as NULL.
    std::memcpy(&lib->desc_, d, std::min<size_t>(d->struct_size, sizeof(lib->desc_)));
    const auto &x = lib->desc_;
    auto need = [&](bool present, const char *field) {
        if (!present) fail("plugin {}: descriptor field '{}' is missing (NULL)", path, field);
    };
    need(x.name != nullptr && *x.name != '\0', "name");
    need(x.version != nullptr, "version");
    need(x.description != nullptr, "description");
    need(x.params_json != nullptr, "params_json");
    need(x.create != nullptr, "create");
    need(x.destroy != nullptr, "destroy");
    need(x.on_initialize != nullptr, "on_initialize");
    lib->name_ = x.name;
    lib->version_ = x.version;
    lib->description_ = x.description;
    lib->params_ = nlohmann::json::parse(x.params_json, nullptr, false);
    if (lib->params_.is_discarded() || !lib->params_.is_array())
        fail("plugin {} ({}): params_json is not a JSON array", path, lib->name_);
    for (const auto &p : lib->params_)
        if (!p.is_object() || !p.contains("name") || !p["name"].is_string() || !p.contains("type") ||
            !p["type"].is_string())
            fail("plugin {} ({}): params_json entry {} lacks a string 'name' and 'type'", path, lib->name_, p.dump());
    return lib;
}

// Never dlclose (the LLVM and NDK lesson: thread_locals and atexit handlers of the library may
// still be registered); the mapping lives until the process exits.
plugin_library::~plugin_library() {
    if (lib_.is_loaded()) {
        static std::vector<boost::dll::shared_library> *keep = new std::vector<boost::dll::shared_library>();
        keep->push_back(lib_);
    }
}

} // namespace llmc
