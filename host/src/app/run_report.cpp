#include "app/run_report.h"

#include "util/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

namespace llmc {

run_report::run_report() : start_(std::chrono::steady_clock::now()), phase_start_(start_) {}

void run_report::close_phase() {
    if (phase_name_.empty()) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - phase_start_).count();
    phases_.emplace_back(phase_name_, s);
    phase_name_.clear();
}

void run_report::phase(const std::string &name) {
    close_phase();
    phase_name_ = name;
    phase_start_ = std::chrono::steady_clock::now();
}

static nlohmann::ordered_json &entry(std::map<std::string, nlohmann::ordered_json> &m, std::vector<std::string> &order,
                                     const std::string &module) {
    auto it = m.find(module);
    if (it == m.end()) {
        order.push_back(module);
        it = m.emplace(module, nlohmann::ordered_json::object()).first;
    }
    return it->second;
}

void run_report::module_scheme(const std::string &module, const std::string &summary) {
    entry(modules_, order_, module)["scheme"] = summary;
}

void run_report::module_figure(const std::string &module, const std::string &key, double value) {
    entry(modules_, order_, module)[key] = value;
}

void run_report::module_bytes(const std::string &module, uint64_t before, uint64_t after) {
    auto &e = entry(modules_, order_, module);
    e["bytes_before"] = before;
    e["bytes_after"] = after;
}

void run_report::totals(uint64_t bytes_before, uint64_t bytes_after) {
    before_ = bytes_before;
    after_ = bytes_after;
}

nlohmann::ordered_json run_report::to_json() {
    close_phase();
    nlohmann::ordered_json j;
    nlohmann::ordered_json ph = nlohmann::ordered_json::object();
    double total = 0;
    for (const auto &[n, s] : phases_) {
        ph[n] = s;
        total += s;
    }
    j["phases_s"] = ph;
    j["total_s"] = total;
    j["bytes_before"] = before_;
    j["bytes_after"] = after_;
    j["modules"] = nlohmann::ordered_json::object();
    for (const auto &m : order_) j["modules"][m] = modules_[m];
    return j;
}

std::string run_report::table() {
    nlohmann::ordered_json j = to_json();
    // Columns: the module, its scheme, then every figure any module reported, in first-seen order.
    std::vector<std::string> keys;
    for (const auto &m : order_)
        for (auto it = modules_[m].begin(); it != modules_[m].end(); ++it)
            if (it.key() != "scheme" && std::find(keys.begin(), keys.end(), it.key()) == keys.end()) keys.push_back(it.key());
    std::string out = fmt::format("{:<44} {:<28}", "module", "scheme");
    for (const auto &k : keys) out += fmt::format(" {:>12}", k);
    out += "\n";
    for (const auto &m : order_) {
        const auto &e = modules_[m];
        out += fmt::format("{:<44} {:<28}", m, e.value("scheme", ""));
        for (const auto &k : keys) {
            if (!e.contains(k)) out += fmt::format(" {:>12}", "-");
            else if (e[k].is_number_float()) out += fmt::format(" {:>12.4g}", e[k].get<double>());
            else out += fmt::format(" {:>12}", e[k].dump());
        }
        out += "\n";
    }
    out += fmt::format("size {:.2f} MiB -> {:.2f} MiB; time", before_ / 1048576.0, after_ / 1048576.0);
    for (const auto &[n, s] : phases_) out += fmt::format(" {} {:.2f}s", n, s);
    return out + "\n";
}

void run_report::write(const std::string &path) {
    std::ofstream f(path);
    f << to_json().dump(2) << "\n";
    if (!f) fail("cannot write the run report {}", path);
}

} // namespace llmc
