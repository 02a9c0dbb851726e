// llm-compressor's targets/ignore matching (compressed-tensors is_match): an entry matches a module
// when it equals its class name or its full name, or, prefixed "re:", when the regular expression
// matches the name from its start (Python re.match).
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace llmc {

class module_matcher {
  public:
    // Compiles the patterns once; a bad regular expression throws naming it.
    explicit module_matcher(const std::vector<std::string> &entries);
    bool operator()(const std::string &name, const std::string &class_name) const;

  private:
    std::vector<std::string> plain_;
    std::vector<std::regex> patterns_;
};

} // namespace llmc
