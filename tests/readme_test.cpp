// Every C++ block of the README is compiled by CI: the first is examples/echo/main.cpp word for
// word, the others are tests/readme_snippets.inc word for word, compiled here.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sluice/sluice.hpp>

namespace readme {
#define main ReadmeMain  // the snippets' main() becomes a plain function here
#include "readme_snippets.inc"
#undef main
}  // namespace readme

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

std::vector<std::string> CppBlocks(const std::string& markdown) {
  std::vector<std::string> blocks;
  const std::string fence = "```cpp\n";
  for (std::size_t at = markdown.find(fence); at != std::string::npos; at = markdown.find(fence, at)) {
    const std::size_t body = at + fence.size();
    const std::size_t end = markdown.find("```", body);
    if (end == std::string::npos) break;
    blocks.push_back(markdown.substr(body, end - body));
    at = end + 3;
  }
  return blocks;
}

TEST(Readme, EveryCppBlockIsCompiledByCi) {
  const std::string root = std::string(SLUICE_EXAMPLES_DIR) + "/..";
  const std::vector<std::string> blocks = CppBlocks(ReadFile(root + "/README.md"));
  ASSERT_GE(blocks.size(), 2u);
  EXPECT_EQ(blocks[0], ReadFile(root + "/examples/echo/main.cpp"));
  const std::string snippets = ReadFile(root + "/tests/readme_snippets.inc");
  for (std::size_t i = 1; i < blocks.size(); ++i) {
    EXPECT_NE(snippets.find(blocks[i]), std::string::npos)
        << "README block " << i << " is not in tests/readme_snippets.inc:\n" << blocks[i];
  }
}

TEST(Readme, SnippetHandlersHaveTheDocumentedShapes) {
  EXPECT_EQ(sluice::Handler(readme::nap).kind(), sluice::Handler::Kind::kCoroutine);
  EXPECT_EQ(sluice::Handler(readme::tokens).kind(), sluice::Handler::Kind::kStreaming);
}

}  // namespace
