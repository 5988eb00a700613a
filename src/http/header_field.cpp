#include "http/header_field.hpp"

#include <boost/beast/core/string.hpp>

namespace sluice::http {

std::string_view FindHeader(const std::vector<HeaderField>& headers, std::string_view name) {
  for (const HeaderField& field : headers) {
    if (boost::beast::iequals(field.name, name)) return field.value;
  }
  return {};
}

}  // namespace sluice::http
