// redis/reply.hpp — one Redis reply as an owned value tree, converted from hiredis's `redisReply`.
//
// hiredis 0.14 speaks RESP2 only, so a reply is one of six kinds: a bulk string (binary-safe, may
// hold NULs), a status (`+OK`), an error (`-ERR ...`), an integer, nil (a null bulk string or
// array), or an array of replies (nested: XREADGROUP answers arrays of arrays). hiredis frees its
// `redisReply` as soon as the callback returns, so the client copies it into a Reply first.
//
// A Redis error reply is a Reply (kind kError), not a failed Status: the command reached the
// server and was answered. The connection's Result fails only when there is no answer (see
// redis/connection.hpp), or when the error says the server did not run the command because it
// cannot serve yet (`IsServerNotReady`): those are retried like a lost connection.
//
// Value type: copies are deep and independent; safe to move between threads. The accessors assert
// the kind (calling `integer()` on a string is a programming error).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct redisReply;  // hiredis/hiredis.h; only reply.cpp and the tests include it

namespace sluice::redis {

class Reply {
 public:
  enum class Kind { kNil, kString, kStatus, kError, kInteger, kArray };

  /// Nil.
  Reply() = default;

  static Reply Nil() { return {}; }
  static Reply String(std::string bytes) { return Reply(Kind::kString, std::move(bytes)); }
  static Reply Status(std::string text) { return Reply(Kind::kStatus, std::move(text)); }
  static Reply Error(std::string text) { return Reply(Kind::kError, std::move(text)); }
  static Reply Integer(std::int64_t value);
  static Reply Array(std::vector<Reply> elements);

  /// A deep copy of hiredis's reply. Kinds hiredis 0.14 does not produce count as nil.
  static Reply FromHiredis(const redisReply& reply);

  Kind kind() const noexcept { return kind_; }
  bool is_nil() const noexcept { return kind_ == Kind::kNil; }
  bool is_string() const noexcept { return kind_ == Kind::kString; }
  bool is_status() const noexcept { return kind_ == Kind::kStatus; }
  bool is_error() const noexcept { return kind_ == Kind::kError; }
  bool is_integer() const noexcept { return kind_ == Kind::kInteger; }
  bool is_array() const noexcept { return kind_ == Kind::kArray; }

  /// The bytes of a string, or the text of a status or an error.
  const std::string& str() const;
  std::int64_t integer() const;
  /// The elements of an array.
  const std::vector<Reply>& elements() const;
  /// Shorthands for arrays: the number of elements, and one of them (asserts the index).
  std::size_t size() const { return elements().size(); }
  const Reply& operator[](std::size_t index) const;

  /// A short human-readable form for logs, messages and test failures: `"bytes"` (escaped),
  /// `+OK`, `-ERR text`, `(integer) 3`, `(nil)`, `[a, b]`. Long strings are cut.
  std::string Describe() const;

  friend bool operator==(const Reply&, const Reply&) = default;

 private:
  Reply(Kind kind, std::string text) : kind_(kind), text_(std::move(text)) {}

  Kind kind_ = Kind::kNil;
  std::string text_;              // kString, kStatus, kError
  std::int64_t integer_ = 0;      // kInteger
  std::vector<Reply> elements_;   // kArray
};

/// The name of a kind, for messages ("string", "status", ...).
std::string_view KindName(Reply::Kind kind);

/// Whether an error reply's text says the server refused the command without running it because
/// it cannot serve for now: `LOADING` (a restarted server still reading its append-only file),
/// `BUSY` (a script past its time limit), `MASTERDOWN` (a replica that lost its primary). Such a
/// command is safe to send again once the server is ready.
bool IsServerNotReady(std::string_view error);

}  // namespace sluice::redis
