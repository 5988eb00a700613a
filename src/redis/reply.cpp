#include "redis/reply.hpp"

#include <algorithm>
#include <cassert>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

namespace sluice::redis {
namespace {

constexpr std::size_t kDescribeMaxBytes = 64;

void AppendEscaped(std::string& out, std::string_view bytes) {
  const std::size_t shown = std::min(bytes.size(), kDescribeMaxBytes);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (shown < bytes.size()) out += fmt::format("...({} bytes)", bytes.size());
}

}  // namespace

Reply Reply::Integer(std::int64_t value) {
  Reply reply;
  reply.kind_ = Kind::kInteger;
  reply.integer_ = value;
  return reply;
}

Reply Reply::Array(std::vector<Reply> elements) {
  Reply reply;
  reply.kind_ = Kind::kArray;
  reply.elements_ = std::move(elements);
  return reply;
}

Reply Reply::FromHiredis(const redisReply& reply) {
  switch (reply.type) {
    case REDIS_REPLY_STRING:
      return String(std::string(reply.str, reply.len));
    case REDIS_REPLY_STATUS:
      return Status(std::string(reply.str, reply.len));
    case REDIS_REPLY_ERROR:
      return Error(std::string(reply.str, reply.len));
    case REDIS_REPLY_INTEGER:
      return Integer(reply.integer);
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> elements;
      elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) {
        // hiredis leaves no hole in an array, but a NULL element would be nil, not a crash.
        elements.push_back(reply.element[i] != nullptr ? FromHiredis(*reply.element[i]) : Nil());
      }
      return Array(std::move(elements));
    }
    case REDIS_REPLY_NIL:
    default:
      return Nil();
  }
}

const std::string& Reply::str() const {
  assert((kind_ == Kind::kString || kind_ == Kind::kStatus || kind_ == Kind::kError) &&
         "Reply::str() needs a string, a status or an error");
  return text_;
}

std::int64_t Reply::integer() const {
  assert(kind_ == Kind::kInteger && "Reply::integer() needs an integer");
  return integer_;
}

const std::vector<Reply>& Reply::elements() const {
  assert(kind_ == Kind::kArray && "Reply::elements() needs an array");
  return elements_;
}

const Reply& Reply::operator[](std::size_t index) const {
  assert(index < elements().size() && "Reply index out of range");
  return elements_[index];
}

std::string Reply::Describe() const {
  std::string out;
  switch (kind_) {
    case Kind::kNil:
      return "(nil)";
    case Kind::kString:
      out += '"';
      AppendEscaped(out, text_);
      out += '"';
      return out;
    case Kind::kStatus:
      out += '+';
      AppendEscaped(out, text_);
      return out;
    case Kind::kError:
      out += '-';
      AppendEscaped(out, text_);
      return out;
    case Kind::kInteger:
      return fmt::format("(integer) {}", integer_);
    case Kind::kArray:
      out += '[';
      for (std::size_t i = 0; i < elements_.size(); ++i) {
        if (i > 0) out += ", ";
        out += elements_[i].Describe();
      }
      out += ']';
      return out;
  }
  return out;
}

std::string_view KindName(Reply::Kind kind) {
  switch (kind) {
    case Reply::Kind::kNil:
      return "nil";
    case Reply::Kind::kString:
      return "string";
    case Reply::Kind::kStatus:
      return "status";
    case Reply::Kind::kError:
      return "error";
    case Reply::Kind::kInteger:
      return "integer";
    case Reply::Kind::kArray:
      return "array";
  }
  return "unknown";
}

bool IsServerNotReady(std::string_view error) {
  // The first word is the error's code; "BUSYGROUP" and the like are other codes.
  const std::string_view code = error.substr(0, error.find(' '));
  return code == "LOADING" || code == "BUSY" || code == "MASTERDOWN";
}

}  // namespace sluice::redis
