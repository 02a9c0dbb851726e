#include "session/module_match.h"

#include "util/error.h"

namespace llmc {

// std::regex's ECMAScript grammar covers what recipes use (.*, alternation, classes, anchors);
// Python-only syntax such as (?P<name>...) is reported as a bad expression.
module_matcher::module_matcher(const std::vector<std::string> &entries) {
    for (const auto &e : entries) {
        if (e.rfind("re:", 0) != 0) {
            plain_.push_back(e);
            continue;
        }
        try {
            patterns_.emplace_back(e.substr(3));
        } catch (const std::regex_error &err) {
            fail("bad regular expression '{}': {}", e, err.what());
        }
    }
}

bool module_matcher::operator()(const std::string &name, const std::string &class_name) const {
    for (const auto &p : plain_)
        if (p == name || p == class_name) return true;
    for (const auto &re : patterns_)
        if (std::regex_search(name, re, std::regex_constants::match_continuous)) return true;
    return false;
}

} // namespace llmc
