// Plugin discovery: every shared library in a directory, each registering one modifier name.
#pragma once

#include "plugin/plugin_library.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llmc {

struct plugin_failure {
    std::string path;
    std::string reason;
};

class plugin_registry {
  public:
    // Loads every *.so in `dir` (sorted by name, so runs are reproducible). A broken library is
    // recorded in failures() and skipped; two libraries registering one name is an error naming
    // both files. A missing or unreadable directory is an error.
    void scan(const std::string &dir);
    // Adds one library file (same rules as scan).
    void add(const std::string &path);

    std::shared_ptr<plugin_library> find(const std::string &name) const;
    // Throws naming the modifier and the available ones.
    std::shared_ptr<plugin_library> get(const std::string &name) const;
    std::vector<std::shared_ptr<plugin_library>> all() const;
    const std::vector<plugin_failure> &failures() const { return failures_; }
    std::string available() const;

  private:
    std::map<std::string, std::shared_ptr<plugin_library>> by_name_;
    std::vector<plugin_failure> failures_;
};

} // namespace llmc
