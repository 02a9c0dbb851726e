#include "util/progress.h"

#include <cstdio>
#include <unistd.h>

namespace llmc {

progress::progress(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), enabled_(::isatty(STDERR_FILENO) != 0 && total > 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {
    if (enabled_) draw();
}

progress::~progress() {
    if (enabled_) {
        draw();
        std::fputc('\n', stderr);
    }
}

void progress::step(uint64_t n) {
    done_ += n;
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (done_ >= total_ || now - last_draw_ > std::chrono::milliseconds(100)) {
        last_draw_ = now;
        draw();
    }
}

void progress::draw() {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    const int width = 30, fill = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(fill), '=');
    if (fill < width) bar += '>' + std::string(static_cast<size_t>(width - fill - 1), ' ');
    const double eta = done_ > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
    std::fprintf(stderr, "\r%s [%s] %llu/%llu %.1fs eta %.1fs ", label_.c_str(), bar.c_str(),
                 static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total_), elapsed, eta);
    std::fflush(stderr);
}

} // namespace llmc
