// `xcaption serve`: the HTTP server (cpp-httplib) in front of the engine (src/server/engine.hpp).
// Routes, limits and error shapes are listed in README "Server".
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <xcaption/captioner.hpp>

#include "src/server/api.hpp"

namespace xcaption::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port (the URL printed says which)
  std::string api_key;               // empty: no key needed
  std::size_t max_queue = 64;        // requests waiting for the engine before 429
  std::size_t max_batch = 8;         // images per engine batch
  std::size_t max_body_bytes = 20u << 20;
  std::int64_t max_pixels = 40'000'000;  // declared width * height of an upload
  double timeout_s = 120;            // from the request's arrival to its answer (504 after)
  int http_threads = 8;              // connections served at once
  double read_timeout_s = 10;        // longest wait for each read of a request
  std::string model_id;              // the name /v1/models and answers carry
  ChatText chat_text = ChatText::Prompt;
};

/// Binds host:port, then loads the model with `load` while /health answers 503, then prints
/// "xcaption: serving http://HOST:PORT" on stderr and serves. On SIGINT or SIGTERM it answers new
/// requests 503, finishes the requests in flight (at most timeout_s more), and returns 0; a second
/// signal exits at once with 128 + its number. Call it before starting other threads: it blocks
/// SIGINT and SIGTERM so that only it receives them.
/// Throws InputError when it cannot listen, and whatever `load` throws.
int serve(const ServerOptions& options, const std::function<Captioner()>& load);

}  // namespace xcaption::server
