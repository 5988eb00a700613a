// echo: the smallest worker. Its output is its input.
//
//   build/bin/echo --test_input '{"input":{"x":1}}'      →  {"output":{"x":1}}
#include <sluice/sluice.hpp>

boost::json::value echo(sluice::Job& job) { return job.input(); }

int main(int argc, char** argv) { return sluice::serverless::start({.handler = echo}, argc, argv); }
