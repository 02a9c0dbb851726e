// The host's error sink: what a plugin reports lands here; the first message wins.
#pragma once

#include <llmc/status.h>

#include <mutex>
#include <string>

namespace llmc {

const char *status_name(llmc_status_t s);

class host_sink {
  public:
    host_sink();
    host_sink(const host_sink &) = delete;
    host_sink &operator=(const host_sink &) = delete;
    llmc_error_sink_t *get() { return &sink_; }
    const std::string &message() const { return message_; }
    llmc_status_t code() const { return code_; }
    // "message [STATUS]" or just the status name when the plugin said nothing.
    std::string describe(llmc_status_t status) const;

  private:
    static void set(llmc_error_sink_t *s, llmc_status_t code, const char *message);
    llmc_error_sink_t sink_{};
    std::string message_;
    llmc_status_t code_ = LLMC_OK;
    bool set_ = false;
    std::mutex mutex_; // the sink is [thread-safe]: a plugin may report from its worker threads
};

// Reports an error into a sink the plugin passed to the host (host -> plugin direction).
void sink_report(llmc_error_sink_t *err, llmc_status_t code, const std::string &message);

} // namespace llmc
