#include "util/runtime.h"

#include "util/cpu_allocator.h"
#include "util/error.h"

#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <malloc.h>
#include <omp.h>
#include <thread>
#include <unistd.h>

namespace llmc {

void runtime_init_logging(const std::string &level) {
    auto logger = spdlog::stderr_color_mt("llmc");
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level));
}

void runtime_init_memory() {
    cpu_allocator_install();
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

void runtime_set_threads(int n) {
    if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Not at::set_num_threads: it also sizes caffe2's pthreadpool (used by QNNPACK and XNNPACK
    // only, never here), whose fresh threads spin for tens of milliseconds. ATen's thread count
    // is the OpenMP one, and ATen initialises each new thread's from these variables.
    const std::string count = std::to_string(n);
    ::setenv("OMP_NUM_THREADS", count.c_str(), 1);
    if (std::getenv("MKL_NUM_THREADS")) ::setenv("MKL_NUM_THREADS", count.c_str(), 1); // ATen lets it win
    runtime_init_thread_count();
    omp_set_num_threads(n);
}

void runtime_init_thread_count() {
    at::internal::lazy_init_num_threads(); // this binary's copy
    at::get_num_threads();                 // libtorch's
}

void runtime_exit(int code) {
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    spdlog::shutdown();
    ::_exit(code);
}

std::string runtime_blas_name() {
    std::ifstream maps("/proc/self/maps");
    std::string line, found;
    while (std::getline(maps, line)) {
        auto pos = line.find('/');
        if (pos == std::string::npos) continue;
        std::string path = line.substr(pos);
        if (path.find("openblas") != std::string::npos) return "openblas (" + path + ")";
        if (path.find("libmkl") != std::string::npos) return "mkl (" + path + ")";
        if (path.find("/blas/libblas") != std::string::npos || path.find("libblas.so") != std::string::npos)
            found = "reference (" + path + ")";
    }
    return found.empty() ? "unknown" : found;
}

void runtime_check_blas() {
    const std::string b = runtime_blas_name();
    if (b.rfind("reference", 0) == 0)
        spdlog::warn("LibTorch uses the reference BLAS {}: matrix products are ~50x slower; install "
                     "libopenblas0-pthread", b);
    else
        spdlog::debug("BLAS: {}", b);
}

static double status_field_mib(const char *field) {
    std::ifstream s("/proc/self/status");
    std::string line;
    const std::string key = std::string(field) + ":";
    while (std::getline(s, line))
        if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0; // kB
    return 0;
}

double runtime_rss_mib() { return status_field_mib("VmRSS"); }
double runtime_peak_rss_mib() { return status_field_mib("VmHWM"); }

uint64_t parse_bytes(const std::string &text, const std::string &what) {
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(text, &pos);
    } catch (...) {
        pos = 0;
    }
    std::string suffix = text.substr(pos);
    double mult = 1;
    if (suffix == "K" || suffix == "k") mult = 1024.0;
    else if (suffix == "M" || suffix == "m") mult = 1024.0 * 1024;
    else if (suffix == "G" || suffix == "g") mult = 1024.0 * 1024 * 1024;
    else if (!suffix.empty()) pos = 0;
    if (pos == 0 || v < 0) throw error(what + ": '" + text + "' is not a size (examples: 512M, 4G)");
    return static_cast<uint64_t>(v * mult);
}

std::atomic<bool> &runtime_cancel_flag() {
    static std::atomic<bool> flag{false};
    return flag;
}

extern "C" void llmc_on_signal(int) { runtime_cancel_flag().store(true); }

void runtime_install_signal_handlers() {
    std::signal(SIGINT, llmc_on_signal);
    std::signal(SIGTERM, llmc_on_signal);
}

} // namespace llmc
