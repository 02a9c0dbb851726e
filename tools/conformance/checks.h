// The conformance checks: each has a kebab-case id and a one-line description, and runs in its own
// child process (see child.h).
#pragma once

#include "child.h"

#include <functional>
#include <string>
#include <vector>

namespace llmc::kit {

struct kit_options {
    std::string plugin;           // path of the library under test
    std::string params = "{}";    // recipe fields used to create instances (JSON object)
};

struct check {
    std::string id;
    std::string description;
    std::function<check_result(const kit_options &)> run;
};

const std::vector<check> &checks_all();

} // namespace llmc::kit
