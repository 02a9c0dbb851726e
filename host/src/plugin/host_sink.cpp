#include "plugin/host_sink.h"

namespace llmc {

const char *status_name(llmc_status_t s) {
    switch (s) {
    case LLMC_OK: return "OK";
    case LLMC_ERR_UNKNOWN: return "UNKNOWN";
    case LLMC_ERR_INTERNAL: return "INTERNAL";
    case LLMC_ERR_INVALID_ARG: return "INVALID_ARG";
    case LLMC_ERR_NOT_FOUND: return "NOT_FOUND";
    case LLMC_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case LLMC_ERR_UNAVAILABLE: return "UNAVAILABLE";
    case LLMC_ERR_CANCELLED: return "CANCELLED";
    case LLMC_ERR_BAD_STATE: return "BAD_STATE";
    case LLMC_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    default: return "UNKNOWN_STATUS";
    }
}

host_sink::host_sink() {
    sink_.struct_size = sizeof(sink_);
    sink_.host_data = this;
    sink_.set = &host_sink::set;
}

void host_sink::set(llmc_error_sink_t *s, llmc_status_t code, const char *message) {
    if (s == nullptr) return;
    auto *self = static_cast<host_sink *>(s->host_data);
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (self->set_) return;
    self->set_ = true;
    self->code_ = code;
    self->message_ = message != nullptr ? message : "";
}

std::string host_sink::describe(llmc_status_t status) const {
    if (message_.empty()) return std::string("failed with ") + status_name(status);
    return message_ + " [" + status_name(status) + "]";
}

void sink_report(llmc_error_sink_t *err, llmc_status_t code, const std::string &message) {
    if (err != nullptr && err->set != nullptr) err->set(err, code, message.c_str());
}

} // namespace llmc
