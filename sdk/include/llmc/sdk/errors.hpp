// Exception barrier for plugin authors: inside the plugin, C++ code throws; at the ABI every
// trampoline catches and turns the exception into a status and a message in the host's sink.
#pragma once

#include <llmc/status.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace llmc::sdk {

// Throw this to fail with a specific status code.
class status_error : public std::runtime_error {
  public:
    status_error(llmc_status_t code, const std::string &what) : std::runtime_error(what), code_(code) {}
    llmc_status_t code() const noexcept { return code_; }

  private:
    llmc_status_t code_;
};

inline void report(llmc_error_sink_t *err, llmc_status_t code, const char *message) noexcept {
    if (err != nullptr && err->set != nullptr) err->set(err, code, message);
}

// Runs fn(); any exception becomes a status (and a message in err). Never throws.
template <class Fn> llmc_status_t barrier(llmc_error_sink_t *err, Fn &&fn) noexcept {
    try {
        fn();
        return LLMC_OK;
    } catch (const status_error &e) {
        report(err, e.code(), e.what());
        return e.code();
    } catch (const std::bad_alloc &) {
        report(err, LLMC_ERR_OUT_OF_MEMORY, "out of memory");
        return LLMC_ERR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        report(err, LLMC_ERR_INTERNAL, e.what());
        return LLMC_ERR_INTERNAL;
    } catch (...) {
        report(err, LLMC_ERR_INTERNAL, "unknown exception");
        return LLMC_ERR_INTERNAL;
    }
}

// Collects the message of a host call made by the plugin, and throws it as status_error.
class error_sink {
  public:
    error_sink() {
        sink_.struct_size = sizeof(sink_);
        sink_.host_data = this;
        sink_.set = &error_sink::set;
    }
    error_sink(const error_sink &) = delete;
    error_sink &operator=(const error_sink &) = delete;
    llmc_error_sink_t *get() { return &sink_; }
    const std::string &message() const { return message_; }

    // Throws status_error when status is not LLMC_OK, prefixed with what was being done.
    void check(llmc_status_t status, const std::string &doing) const {
        if (status == LLMC_OK) return;
        throw status_error(status, doing + ": " + (message_.empty() ? std::string("failed") : message_));
    }

  private:
    static void set(llmc_error_sink_t *s, llmc_status_t, const char *message) {
        auto *self = static_cast<error_sink *>(s->host_data);
        if (self->message_.empty() && message != nullptr) self->message_ = message;
    }
    llmc_error_sink_t sink_{};
    std::string message_;
};

} // namespace llmc::sdk
