// Process-wide runtime set-up: logging, threads, the BLAS check, cancellation on SIGINT/SIGTERM.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace llmc {

// Sets spdlog's level ("trace", "debug", "info", "warn", "error", "off"); logs go to stderr.
void runtime_init_logging(const std::string &level);
// glibc's malloc raises its mmap threshold as large blocks are freed, after which layer-sized
// tensors come from the heap and freed layers fragment it: memory then grows layer by layer.
// A fixed threshold keeps large tensors in their own mappings, returned to the system when freed.
// LibTorch's tensors get the host's allocator (util/cpu_allocator.h): the same, with huge pages.
void runtime_init_memory();
// intra-op threads: n > 0 as given, else the machine's hardware threads. Also set in the
// environment as OMP_NUM_THREADS, which ATen reads for each new thread (plugins' included).
void runtime_set_threads(int n);
// Runs ATen's lazy per-thread initialisation of the intra-op thread count on this thread now, so
// that a later at::parallel_for cannot undo an omp_set_num_threads made after it. Its flag is an
// inline function's thread_local: libtorch and this binary each hold a copy, and both run.
void runtime_init_thread_count();
// Names the BLAS library LibTorch's matrix products resolve to (from the process's mappings) and
// warns when it is the slow reference BLAS.
std::string runtime_blas_name();
void runtime_check_blas();
// Resident memory now and at its peak (VmRSS, VmHWM), in MiB.
double runtime_rss_mib();
double runtime_peak_rss_mib();
// "512", "64K", "300M", "4G" (powers of 1024) -> bytes; throws naming `what`.
uint64_t parse_bytes(const std::string &text, const std::string &what);
// Ends the process with `code` after flushing stdio and the logs, skipping static destructors:
// what is left then is LibTorch's static state, whose teardown (deregistering every operator,
// ~0.1 s) does nothing a finishing process needs. Call only once every object of the run is gone.
[[noreturn]] void runtime_exit(int code);
// Set by SIGINT/SIGTERM once runtime_install_signal_handlers ran; long loops poll it.
std::atomic<bool> &runtime_cancel_flag();
void runtime_install_signal_handlers();

} // namespace llmc
