// facet/core/error.hpp — the one exception type facet throws, and the checks that throw it.
// Read next: core/tensor.hpp.
#pragma once

#include <cstddef>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace facet {

/// Every error facet reports is a facet::Error: a std::runtime_error whose message says what was
/// wrong and where (function, file, line or field), so a caller can print it as it is.
class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

/// Throws facet::Error with the streamed arguments as message when `cond` is false.
template <typename... Args>
inline void check(bool cond, Args&&... args) {
    if (!cond) throw Error(detail::concat(std::forward<Args>(args)...));
}

/// a*b, or an Error when the product would not fit in size_t (sizes read from files and
/// command lines go through this before anything is allocated).
inline std::size_t checked_mul(std::size_t a, std::size_t b, const char* what = "size") {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
        throw Error(detail::concat(what, ": ", a, " x ", b, " overflows size_t"));
    return a * b;
}

inline std::size_t checked_add(std::size_t a, std::size_t b, const char* what = "size") {
    if (b > std::numeric_limits<std::size_t>::max() - a)
        throw Error(detail::concat(what, ": ", a, " + ", b, " overflows size_t"));
    return a + b;
}

}  // namespace facet
