// Small helpers shared by the tests: shared data location, temporary directories, running the
// real executables.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace llmc::test {

// ../shared beside the checkout, or "" when absent (a user's machine).
std::string shared_dir();
std::string stories_dir(); // shared_dir()/models/stories260K

struct command_result {
    int exit_code = -1;
    std::string output; // stdout and stderr together
};
command_result run_command(const std::string &cmd);

std::string read_file(const std::string &path);
void write_file(const std::string &path, const std::string &text);

// A fresh directory under the build tree, removed at destruction.
class temp_dir {
  public:
    explicit temp_dir(const std::string &tag = "t");
    ~temp_dir();
    const std::string &path() const { return path_; }
    std::string operator/(const std::string &name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

} // namespace llmc::test

#define LLMC_REQUIRE_SHARED()                                                                                  \
    do {                                                                                                       \
        if (::llmc::test::shared_dir().empty())                                                                \
            GTEST_SKIP() << "shared test data not found at " LLMC_SHARED_DIR " (the tests' ../shared); skipped"; \
    } while (0)
