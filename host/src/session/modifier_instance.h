// One modifier instance created by a plugin: owns the plugin's instance and its host table,
// calls the plugin through the host's error sink (failures become llmc::error naming the
// modifier and where it came from), and applies llm-compressor's lifecycle dispatch.
#pragma once

#include "plugin/plugin_library.h"

#include <llmc/llmc.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

namespace llmc {

class session;

class modifier_instance {
  public:
    // Creates the plugin's instance with `fields` (JSON object); throws naming `where`.
    modifier_instance(std::shared_ptr<plugin_library> lib, const nlohmann::ordered_json &fields,
                      const std::string &where, session &s, size_t id);
    ~modifier_instance();
    modifier_instance(const modifier_instance &) = delete;
    modifier_instance &operator=(const modifier_instance &) = delete;

    const std::string &name() const { return lib_->name(); }
    const std::string &where() const { return where_; }
    size_t id() const { return id_; }
    session &owner() const { return session_; }
    const plugin_library &library() const { return *lib_; }
    bool requires_calibration_data();
    bool initialized() const { return initialized_; }
    bool finalized() const { return finalized_; }

    void initialize();
    // on_event first, then the calibration hook for the type, then the training lifecycle.
    void dispatch(const llmc_event_t &ev);
    // Removes this instance's hooks (as HooksMixin at finalize), then on_finalize. Idempotent.
    void finalize();

    // For the conformance kit, which drives the raw ABI: the plugin's instance and its host table.
    llmc_modifier_t *raw_instance() const { return inst_; }
    const llmc_host_t *host_table() const { return &host_; }

  private:
    void call(const char *what, llmc_status_t (*fn)(llmc_modifier_t *, llmc_error_sink_t *));
    void call_event(const char *what, llmc_modifier_event_fn fn, const llmc_event_t &ev);

    std::shared_ptr<plugin_library> lib_; // keeps the library mapped while the instance lives
    std::string where_;
    session &session_;
    size_t id_;
    llmc_host_t host_{};
    llmc_modifier_t *inst_ = nullptr;
    std::optional<double> start_, end_;
    bool initialized_ = false, finalized_ = false, started_ = false, ended_ = false;
};

} // namespace llmc
