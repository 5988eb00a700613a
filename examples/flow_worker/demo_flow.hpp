// demo_flow.hpp — the two-step flow the flow examples serve: `flow_worker` behind the job API,
// `flow_server` on a Unix socket.
//
//   preprocess (2 workers, one task at a time): {"text": "Hello World"} → {"text": "hello world",
//              "words": 2}; any other input → {"value": input}
//   model      (1 worker, batches of up to 32, waiting at most 2 ms for company): wraps each
//              task as {"input": <preprocessed>, "batch_size": N, "batch": K}, where N is the size of
//              the batch the task ran in and K counts the batches this worker ran. Its state (the
//              batch counter) is made once per worker by a factory, as a loaded model would be.
//
// A task whose input is {"fail": "why"} is failed by the model step with that message, to show a
// failing task that does not fail its batch.
#pragma once

#include <cctype>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>

#include <boost/json.hpp>

#include <sluice/flow.hpp>

namespace demo {

inline void Preprocess(sluice::FlowBatch batch) {
  for (sluice::FlowTask& task : batch) {
    const boost::json::object* object = task.data.if_object();
    const boost::json::value* text = object ? object->if_contains("text") : nullptr;
    if (text && text->is_string()) {
      std::string lower(text->get_string());
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::istringstream words_in(lower);
      std::size_t words = 0;
      for (std::string word; words_in >> word;) ++words;
      task.data = boost::json::object{{"text", lower}, {"words", words}};
    } else if (!(object && object->contains("fail"))) {
      task.data = boost::json::object{{"value", std::move(task.data)}};
    }
  }
}

// The "model": state made once per worker, a batch at a time.
class Model {
 public:
  void Run(sluice::FlowBatch batch) {
    ++batches_;
    for (sluice::FlowTask& task : batch) {
      const boost::json::object* object = task.data.if_object();
      const boost::json::value* fail = object ? object->if_contains("fail") : nullptr;
      if (fail) {
        task.fail(fail->is_string() ? std::string(fail->get_string()) : "asked to fail");
        continue;
      }
      task.data = boost::json::object{{"input", std::move(task.data)}, {"batch_size", batch.size()}, {"batch", batches_}};
    }
  }

 private:
  std::uint64_t batches_ = 0;
};

/// Adds the two steps to `flow` (before flow.start()).
inline void AddDemoSteps(sluice::Flow& flow) {
  flow.add_step({.name = "preprocess", .handler = Preprocess, .workers = 2, .max_batch_size = 1,
                 .queue_capacity = 4096});
  flow.add_step({.name = "model",
                 .handler = [] {
                   return [model = std::make_shared<Model>()](sluice::FlowBatch batch) { model->Run(batch); };
                 },
                 .workers = 1,
                 .max_batch_size = 32,
                 .max_batch_delay = std::chrono::milliseconds(2),
                 .queue_capacity = 4096});
}

}  // namespace demo
