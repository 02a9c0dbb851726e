// The run report: per module the scheme, the figures plugins reported (loss, error, time) and the
// size before and after; totals and time per phase. Printed as a table and written as JSON next
// to the checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace llmc {

class run_report {
  public:
    run_report();
    // Ends the current phase (if any) and starts `name`.
    void phase(const std::string &name);
    void module_scheme(const std::string &module, const std::string &summary);
    void module_figure(const std::string &module, const std::string &key, double value);
    void module_bytes(const std::string &module, uint64_t before, uint64_t after);
    void totals(uint64_t bytes_before, uint64_t bytes_after);

    nlohmann::ordered_json to_json();
    std::string table();
    void write(const std::string &path);

  private:
    void close_phase();
    std::chrono::steady_clock::time_point start_, phase_start_;
    std::string phase_name_;
    std::vector<std::pair<std::string, double>> phases_;
    std::map<std::string, nlohmann::ordered_json> modules_;
    std::vector<std::string> order_;
    uint64_t before_ = 0, after_ = 0;
};

} // namespace llmc
