// The host's one exception type. Messages say what is wrong and where (file, key, module, plugin).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace llmc {

class error : public std::runtime_error {
  public:
    explicit error(const std::string &what) : std::runtime_error(what) {}
};

template <class... Args> [[noreturn]] void fail(fmt::format_string<Args...> f, Args &&...args) {
    throw error(fmt::format(f, std::forward<Args>(args)...));
}

} // namespace llmc
