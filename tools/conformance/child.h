// Runs one check in a child process, so a crash is reported as `crashed` with its signal
// instead of killing the kit.
#pragma once

#include <functional>
#include <string>

namespace llmc::kit {

enum class check_status { success, failed, skipped, warning, crashed };
const char *check_status_name(check_status s);

struct check_result {
    check_status status = check_status::success;
    std::string details;
    int signal = 0;              // crashed: the signal number
    std::string stdout_captured; // what the check wrote to stdout (plugins must not)
};

// Forks; the child runs fn with stdout redirected to a capture file, sends its result back and
// exits. A child that dies by a signal, exits without a result, or outlives timeout_s is reported.
check_result child_run(const std::function<check_result()> &fn, int timeout_s);

} // namespace llmc::kit
