// http/header_field.hpp — one HTTP header as the server and the client both expose it, and the
// case-insensitive lookup both need. Plain values; thread-safe to read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

struct HeaderField {
  std::string name;
  std::string value;
};

/// The value of the first header named `name` (compared case-insensitively, as HTTP says), or ""
/// when there is none.
std::string_view FindHeader(const std::vector<HeaderField>& headers, std::string_view name);

}  // namespace sluice::http
