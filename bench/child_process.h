// Runs a benchmark's child process (the real llmc-host) and measures it: wall time, and peak RSS
// and CPU time from wait4's rusage. Header-only, shared by the benchmarks that time llmc-host.
#pragma once

#include <chrono>
#include <fcntl.h>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace llmc_bench {

struct child_result {
    bool ok = false; // exited with status 0
    double seconds = 0;
    double peak_rss_mib = 0;
    double cpu_seconds = 0; // user + system time of all its threads
};

// Runs argv with stdout (and stderr too when `with_stderr`) going to `out_path`.
inline child_result run_child(const std::vector<std::string> &args, const std::string &out_path,
                              bool with_stderr = true) {
    const auto t0 = std::chrono::steady_clock::now();
    pid_t pid = fork();
    if (pid == 0) {
        std::vector<char *> argv;
        for (const auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDOUT_FILENO);
        if (with_stderr) dup2(fd, STDERR_FILENO);
        execv(argv[0], argv.data());
        _exit(127);
    }
    int status = 0;
    struct rusage ru {};
    wait4(pid, &status, 0, &ru);
    child_result r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    r.peak_rss_mib = ru.ru_maxrss / 1024.0; // kilobytes on Linux
    r.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return r;
}

} // namespace llmc_bench
