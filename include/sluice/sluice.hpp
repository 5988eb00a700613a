// sluice/sluice.hpp — everything a handler program needs, in one include.
//
//   #include <sluice/sluice.hpp>
//
//   boost::json::value echo(sluice::Job& job) { return job.input(); }
//
//   int main(int argc, char** argv) {
//     return sluice::serverless::start({.handler = echo}, argc, argv);
//   }
#pragma once

#include <boost/json.hpp>

#include <sluice/flow.hpp>
#include <sluice/handler.hpp>
#include <sluice/job.hpp>
#include <sluice/json.hpp>
#include <sluice/serverless.hpp>
#include <sluice/stream.hpp>
#include <sluice/task.hpp>
#include <sluice/version.hpp>
