// A progress bar with ETA on stderr, drawn only when stderr is a terminal (logs stay clean).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace llmc {

class progress {
  public:
    progress(std::string label, uint64_t total);
    ~progress(); // ends the line
    void step(uint64_t n = 1);

  private:
    void draw();
    std::string label_;
    uint64_t total_, done_ = 0;
    bool enabled_;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

} // namespace llmc
