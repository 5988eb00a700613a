// stream_tokens: a streaming coroutine handler that sends its result a word at a time.
//
// EmitTokens splits `text` (default "hello from sluice") on spaces and emits one chunk per word,
// {"token": word, "index": i}, optionally `delay_ms` milliseconds apart (default 0). Each chunk
// reaches the client as soon as it is emitted; in local test mode that is one {"output": chunk}
// line per word, followed by the final result listing every chunk.
//
//   cd examples/stream_tokens && ../../build/bin/stream_tokens   # runs ./test_input.json
//   build/bin/stream_tokens --test_input '{"input":{"text":"a b c d","delay_ms":200}}'
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

// Beyond this a pause between tokens is surely a mistake; it also keeps the duration in range.
constexpr double kMaxDelayMs = 60'000;

// Runs of spaces would otherwise produce empty tokens.
std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> words;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find(' ', start), text.size());
    if (end > start) words.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

sluice::Task<void> EmitTokens(sluice::Job& job, sluice::Stream& out) {
  const json::value& input = job.input();
  if (!input.is_object()) {
    throw std::invalid_argument("input must be a JSON object, got " + sluice::to_json(input));
  }
  const json::object& fields = input.get_object();

  std::string text = "hello from sluice";
  if (const json::value* given = fields.if_contains("text")) {
    if (!given->is_string()) {
      throw std::invalid_argument("\"text\" must be a string, got " + sluice::to_json(*given));
    }
    text = given->get_string();
  }
  double delay_ms = 0;
  if (const json::value* given = fields.if_contains("delay_ms")) {
    if (!given->is_number()) {
      throw std::invalid_argument("\"delay_ms\" must be a number, got " + sluice::to_json(*given));
    }
    delay_ms = given->to_number<double>();
    if (!(delay_ms >= 0 && delay_ms <= kMaxDelayMs)) {  // written so that NaN fails too
      throw std::invalid_argument("\"delay_ms\" must be between 0 and 60000, got " +
                                  sluice::to_json(*given));
    }
  }
  const auto delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double, std::milli>(delay_ms));

  const std::vector<std::string> words = SplitWords(text);
  for (std::size_t i = 0; i < words.size(); ++i) {
    // No pause before the first token: a client should see output as early as possible.
    if (i > 0 && delay > delay.zero()) co_await sluice::sleep_for(delay);
    // Built as a named local, not as a braced list inside the co_await: GCC 12 rejects an
    // initializer list in a co_await expression ("array used as initializer").
    json::object chunk{{"token", words[i]}, {"index", static_cast<std::int64_t>(i)}};
    // emit throws once the job is cancelled, which ends the loop without a check of our own.
    co_await out.emit(std::move(chunk));
  }
}

}  // namespace

int main(int argc, char** argv) { return sluice::serverless::start({.handler = EmitTokens}, argc, argv); }
