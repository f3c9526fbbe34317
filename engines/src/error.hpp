// The one exception type inside the library: a status and a message. c_api.cpp turns it (and
// anything else thrown) into the status returned through the C boundary and mild_last_error().
#pragma once

#include "mild/mild.h"

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mild::detail {

class Failure : public std::runtime_error {
public:
    Failure(mild_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    mild_status status() const noexcept { return status_; }

private:
    mild_status status_;
};

// fail(MILD_ERROR_INVALID_ARGUMENT, "mask ", k, " is empty")
template <typename... Parts>
[[noreturn]] void fail(mild_status status, Parts&&... parts) {
    std::ostringstream text;
    (text << ... << std::forward<Parts>(parts));
    throw Failure(status, text.str());
}

}  // namespace mild::detail
