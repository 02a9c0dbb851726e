#include "child.h"

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace llmc::kit {

const char *check_status_name(check_status s) {
    switch (s) {
    case check_status::success: return "success";
    case check_status::failed: return "failed";
    case check_status::skipped: return "skipped";
    case check_status::warning: return "warning";
    case check_status::crashed: return "crashed";
    }
    return "?";
}

static std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
}

check_result child_run(const std::function<check_result()> &fn, int timeout_s) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return {check_status::failed, std::string("pipe: ") + std::strerror(errno)};
    char capture[] = "/tmp/llmc-conformance-stdout-XXXXXX";
    int cap = mkstemp(capture);
    if (cap < 0) return {check_status::failed, std::string("mkstemp: ") + std::strerror(errno)};
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return {check_status::failed, std::string("fork: ") + std::strerror(errno)};
    if (pid == 0) {
        close(pipefd[0]);
        dup2(cap, STDOUT_FILENO);
        alarm(static_cast<unsigned>(timeout_s));
        check_result r;
        try {
            r = fn();
        } catch (const std::exception &e) {
            r = {check_status::failed, std::string("exception escaped: ") + e.what()};
        } catch (...) {
            r = {check_status::failed, "unknown exception escaped"};
        }
        std::fflush(stdout);
        nlohmann::json j = {{"status", static_cast<int>(r.status)}, {"details", r.details}};
        const std::string s = j.dump();
        ssize_t off = 0;
        while (off < static_cast<ssize_t>(s.size())) {
            ssize_t w = write(pipefd[1], s.data() + off, s.size() - off);
            if (w <= 0) break;
            off += w;
        }
        close(pipefd[1]);
        _exit(0); // skip atexit handlers and static destructors of the plugin: they are not checked here
    }
    close(pipefd[1]);
    const std::string msg = read_all(pipefd[0]);
    close(pipefd[0]);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    check_result r;
    lseek(cap, 0, SEEK_SET);
    r.stdout_captured = read_all(cap);
    close(cap);
    unlink(capture);
    if (WIFSIGNALED(wstatus)) {
        r.status = check_status::crashed;
        r.signal = WTERMSIG(wstatus);
        r.details = r.signal == SIGALRM ? "timed out after " + std::to_string(timeout_s) + " s" : std::string("killed by signal ") +
                                                                         std::to_string(r.signal) + " (" +
                                                                         strsignal(r.signal) + ")";
        return r;
    }
    auto j = nlohmann::json::parse(msg, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        r.status = check_status::failed;
        r.details = "the check exited without a result (exit status " + std::to_string(WEXITSTATUS(wstatus)) + ")";
        return r;
    }
    r.status = static_cast<check_status>(j.value("status", 1));
    r.details = j.value("details", "");
    return r;
}

} // namespace llmc::kit
