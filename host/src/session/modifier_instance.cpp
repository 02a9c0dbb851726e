#include "session/modifier_instance.h"

#include "plugin/host_sink.h"
#include "session/host_services.h"
#include "session/session.h"
#include "util/error.h"

#include <spdlog/spdlog.h>

namespace llmc {

static std::optional<double> optional_number(const nlohmann::ordered_json &fields, const char *key,
                                             const std::string &where) {
    if (!fields.is_object() || !fields.contains(key) || fields[key].is_null()) return std::nullopt;
    if (!fields[key].is_number()) fail("{}: field '{}': expected a number, got {}", where, key, fields[key].dump());
    return fields[key].get<double>();
}

modifier_instance::modifier_instance(std::shared_ptr<plugin_library> lib, const nlohmann::ordered_json &fields,
                                     const std::string &where, session &s, size_t id)
    : lib_(std::move(lib)), where_(where), session_(s), id_(id) {
    host_ = host_services_table(*this);
    start_ = optional_number(fields, "start", where_);
    end_ = optional_number(fields, "end", where_);
    host_sink sink;
    const std::string text = fields.dump();
    llmc_status_t st = LLMC_ERR_INTERNAL;
    try {
        st = lib_->descriptor().create(&host_, text.c_str(), &inst_, sink.get());
    } catch (...) {
        fail("{}: {} ({}): create let an exception escape through the C ABI (a plugin bug: wrap callbacks "
             "in the SDK's barrier)", where_, name(), lib_->path());
    }
    if (st != LLMC_OK || inst_ == nullptr)
        fail("{}: {} ({}): create: {}", where_, name(), lib_->path(),
             st != LLMC_OK ? sink.describe(st) : "returned OK but no instance");
}

modifier_instance::~modifier_instance() {
    if (inst_ == nullptr) return;
    try {
        lib_->descriptor().destroy(inst_);
    } catch (...) {
        spdlog::error("{}: {} destroy let an exception escape through the C ABI (a plugin bug)", where_, name());
    }
}

bool modifier_instance::requires_calibration_data() {
    const auto &d = lib_->descriptor();
    if (d.requires_calibration_data == nullptr) return (d.flags & LLMC_MODIFIER_REQUIRES_DATA) != 0;
    try {
        return d.requires_calibration_data(inst_) != 0;
    } catch (...) {
        fail("{}: {} requires_calibration_data let an exception escape through the C ABI (a plugin bug)", where_,
             name());
    }
}

void modifier_instance::call(const char *what, llmc_status_t (*fn)(llmc_modifier_t *, llmc_error_sink_t *)) {
    if (fn == nullptr) return;
    host_sink sink;
    llmc_status_t st = LLMC_ERR_INTERNAL;
    try {
        st = fn(inst_, sink.get());
    } catch (...) {
        fail("{}: {} {} let an exception escape through the C ABI (a plugin bug)", where_, name(), what);
    }
    if (st != LLMC_OK) fail("{}: {} {}: {}", where_, name(), what, sink.describe(st));
}

void modifier_instance::call_event(const char *what, llmc_modifier_event_fn fn, const llmc_event_t &ev) {
    if (fn == nullptr) return;
    host_sink sink;
    llmc_status_t st = LLMC_ERR_INTERNAL;
    try {
        st = fn(inst_, &ev, sink.get());
    } catch (...) {
        fail("{}: {} {} let an exception escape through the C ABI (a plugin bug)", where_, name(), what);
    }
    if (st != LLMC_OK) fail("{}: {} {}: {}", where_, name(), what, sink.describe(st));
}

void modifier_instance::initialize() {
    if (initialized_) fail("{}: {} initialized twice", where_, name());
    call("on_initialize", lib_->descriptor().on_initialize);
    initialized_ = true;
    // llm-compressor fires a fake BATCH_START at index 0 after on_initialize: a modifier whose
    // start is already reached starts now.
    llmc_event_t ev = event_make(LLMC_EVENT_BATCH_START);
    if (start_ && *start_ <= 0 && (!end_ || 0 < *end_)) {
        call_event("on_start", lib_->descriptor().on_start, ev);
        started_ = true;
    }
}

void modifier_instance::dispatch(const llmc_event_t &ev) {
    if (!initialized_ || finalized_) fail("{}: {} got an event outside initialize..finalize", where_, name());
    const auto &d = lib_->descriptor();
    call_event("on_event", d.on_event, ev);
    switch (ev.type) {
    case LLMC_EVENT_CALIBRATION_START: call_event("on_calibration_start", d.on_calibration_start, ev); break;
    case LLMC_EVENT_SEQUENTIAL_EPOCH_END: call_event("on_sequential_epoch_end", d.on_sequential_epoch_end, ev); break;
    case LLMC_EVENT_CALIBRATION_END: call_event("on_calibration_end", d.on_calibration_end, ev); break;
    default: break;
    }
    // Training lifecycle (llm-compressor's Modifier.update_event): start on BATCH_START once
    // start <= index < end, end on BATCH_END once end <= index, update while active.
    const double idx = ev.current_index;
    if (ev.type == LLMC_EVENT_BATCH_START && !started_ && start_ && *start_ <= idx && (!end_ || idx < *end_)) {
        call_event("on_start", d.on_start, ev);
        started_ = true;
        call_event("on_update", d.on_update, ev);
        return;
    }
    if (ev.type == LLMC_EVENT_BATCH_END && started_ && !ended_ && end_ && *end_ <= idx) {
        call_event("on_end", d.on_end, ev);
        ended_ = true;
        call_event("on_update", d.on_update, ev);
        return;
    }
    if (started_ && !ended_) call_event("on_update", d.on_update, ev);
}

void modifier_instance::finalize() {
    if (finalized_ || !initialized_) return;
    finalized_ = true;
    session_.hooks_remove_owned(id_);
    call("on_finalize", lib_->descriptor().on_finalize);
}

} // namespace llmc
