#include "test_support.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/wait.h>

namespace llmc::test {

namespace fs = std::filesystem;

std::string shared_dir() {
    std::error_code ec;
    return fs::is_directory(fs::path(LLMC_SHARED_DIR) / "models", ec) ? std::string(LLMC_SHARED_DIR) : std::string();
}

std::string stories_dir() { return shared_dir() + "/models/stories260K"; }

command_result run_command(const std::string &cmd) {
    command_result r;
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    int st = pclose(p);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string &path, const std::string &text) { std::ofstream(path, std::ios::binary) << text; }

temp_dir::temp_dir(const std::string &tag) {
    std::random_device rd;
    path_ = std::string(LLMC_BINARY_DIR) + "/test-tmp/" + tag + "-" + std::to_string(rd());
    fs::create_directories(path_);
}

temp_dir::~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

} // namespace llmc::test
