// redis/url.hpp — where a Redis server is and how to log in: `redis://[[user]:password@]HOST[:PORT][/DB]`.
//
// A pure parser (no DNS, no I/O), so `--queue redis://...` can be checked at start with an error
// that names the problem. The password and user may be percent-encoded (a password with '@' or
// '/' must be); HOST may be a name, an IPv4 address or a bracketed IPv6 address; PORT defaults to
// 6379 and DB to 0. A password is sent as `AUTH [user] password` and a DB other than 0 as
// `SELECT db` on every connect (redis/connection.hpp). TLS (`rediss://`), Unix sockets and query
// options are not supported and are refused rather than ignored.
//
// Value types; thread-safe as values are.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.hpp"

namespace sluice::redis {

struct Endpoint {
  std::string host;  // without brackets
  std::uint16_t port = 6379;
  std::string user;      // empty: `AUTH password`, the pre-ACL form
  std::string password;  // empty: no AUTH
  int db = 0;

  /// host:port ([v6]:port), for messages.
  std::string Address() const;
  /// The URL without the credentials, safe to log: `redis://host:port/db`.
  std::string Redacted() const;
};

/// Parses a Redis URL. kInvalidArgument naming the problem (scheme, host, port, db, ...) and the
/// URL with its password hidden when it is malformed.
core::Result<Endpoint> ParseUrl(std::string_view url);

}  // namespace sluice::redis
