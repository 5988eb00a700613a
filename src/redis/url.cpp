#include "redis/url.hpp"

#include <charconv>
#include <system_error>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>

namespace sluice::redis {
namespace {

// The URL as the user wrote it, with anything between "://" and the last '@' of the authority
// replaced by "***": error messages end up in logs, passwords must not.
std::string HideCredentials(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const std::size_t authority = scheme_end + 3;
  const std::size_t authority_end = url.find_first_of("/?#", authority);
  const std::string_view text = url.substr(authority, authority_end == std::string_view::npos
                                                          ? std::string_view::npos
                                                          : authority_end - authority);
  const std::size_t at = text.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  return fmt::format("{}***{}", url.substr(0, authority), url.substr(authority + at));
}

core::Status Invalid(std::string_view url, std::string_view problem) {
  return core::Status::InvalidArgument(
      fmt::format("invalid Redis URL '{}': {} (expected redis://[:password@]host[:port][/db])",
                  HideCredentials(url), problem));
}

}  // namespace

std::string Endpoint::Address() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string Endpoint::Redacted() const { return fmt::format("redis://{}/{}", Address(), db); }

core::Result<Endpoint> ParseUrl(std::string_view url) {
  if (url.empty()) return Invalid(url, "it is empty");
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return Invalid(url, parsed.error().message());
  const boost::urls::url_view& view = *parsed;
  if (view.scheme() != "redis") {
    if (view.scheme() == "rediss") return Invalid(url, "TLS (rediss://) is not supported");
    return Invalid(url, fmt::format("the scheme is '{}', not 'redis'", std::string(view.scheme())));
  }
  if (!view.has_authority() || view.encoded_host().empty()) return Invalid(url, "no host");
  if (view.has_query()) return Invalid(url, "query options are not supported");
  if (view.has_fragment()) return Invalid(url, "a fragment is not allowed");

  Endpoint endpoint;
  switch (view.host_type()) {
    case boost::urls::host_type::ipv6:
      endpoint.host = view.host_ipv6_address().to_string();
      break;
    case boost::urls::host_type::ipv4:
      endpoint.host = view.host_ipv4_address().to_string();
      break;
    case boost::urls::host_type::name:
      endpoint.host = view.host_name();
      break;
    default:
      return Invalid(url, "the host is neither a name nor an IP address");
  }

  if (view.has_port()) {
    const std::string_view text = view.port();
    unsigned value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() || value == 0 ||
        value > 65535) {
      return Invalid(url, fmt::format("the port '{}' is not a number from 1 to 65535", text));
    }
    endpoint.port = static_cast<std::uint16_t>(value);
  }

  if (view.has_userinfo()) {
    endpoint.user = view.user();
    endpoint.password = view.password();
    if (!endpoint.user.empty() && endpoint.password.empty()) {
      return Invalid(url, "a user needs a password (user:password@)");
    }
  }

  const std::string_view path = view.encoded_path();
  if (!path.empty() && path != "/") {
    const std::string_view db = path.substr(1);
    int value = 0;
    const auto [end, error] = std::from_chars(db.data(), db.data() + db.size(), value);
    if (error != std::errc() || end != db.data() + db.size() || value < 0) {
      return Invalid(url, fmt::format("the database '{}' is not a number from 0 up", db));
    }
    endpoint.db = value;
  }
  return endpoint;
}

}  // namespace sluice::redis
