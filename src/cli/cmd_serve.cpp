// xcaption serve: an HTTP server with the Hugging Face and OpenAI request shapes (src/server/).
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "src/cli/cli.hpp"
#include "src/server/server.hpp"

namespace xcaption::cli {

namespace {

const char* kDetails =
    "Routes (README \"Server\" has the reference):\n"
    "  GET  /                      a page: drop an image, see its caption and where each word looked\n"
    "  GET  /health                200 {\"status\": \"ok\", \"model\"} once loaded, 503 before\n"
    "  GET  /metrics               Prometheus text: requests, latency, queue depth, tokens\n"
    "  POST /caption               image bytes, multipart 'file', or {\"inputs\": BASE64}\n"
    "                              -> [{\"generated_text\"}]; ?details=true: the caption --json object\n"
    "  POST /attend                the same input -> caption and per-token maps (attend --json)\n"
    "  POST /v1/chat/completions   OpenAI chat completions with a data: image_url; stream: true for SSE\n"
    "  GET  /v1/models             the loaded model\n"
    "Generation fields (query, form fields or chat extensions): beams, max_new_tokens,\n"
    "min_new_tokens, length_penalty, early_stopping, no_repeat_ngram_size, repetition_penalty, prompt.\n"
    "\n"
    "Errors are {\"error\": {\"message\", \"type\", \"code\"}}: 400 bad input, 401 API key, 413 body or\n"
    "pixel cap, 415 content type, 429 queue full, 503 loading or stopping, 504 --timeout.\n"
    "Requests with the same generation settings that wait together are captioned as one batch.\n"
    "Image URLs are never fetched: chat images must be data: URLs.\n"
    "SIGINT/SIGTERM: new requests get 503, those in flight finish, exit 0 (a second signal quits now).\n";

int positive_int(const po::variables_map& vm, const char* key, std::int64_t lo, std::int64_t hi) {
  const auto v = vm[key].as<std::int64_t>();
  if (v < lo || v > hi) throw UsageError(fmt::format("--{} must lie in [{}, {}], got {}", key, lo, hi, v));
  return static_cast<int>(v);
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("host", po::value<std::string>()->default_value("127.0.0.1")->value_name("ADDR"),
       "address to listen on (0.0.0.0 or :: for every interface: then set --api-key)")
      ("port,p", po::value<std::int64_t>()->default_value(8080)->value_name("N"), "TCP port (0 = any free port)")
      ("api-key", po::value<std::string>()->value_name("KEY"),
       "require Authorization: Bearer KEY on every route but / and /health (default: $XCAPTION_API_KEY)")
      ("max-queue", po::value<std::int64_t>()->default_value(64)->value_name("N"),
       "requests that may wait for the engine; more get 429")
      ("max-batch", po::value<std::int64_t>()->default_value(8)->value_name("N"), "images per engine batch")
      ("max-body-mb", po::value<double>()->default_value(20, "20")->value_name("MB"), "largest request body (413 above)")
      ("max-pixels", po::value<std::int64_t>()->default_value(40'000'000)->value_name("N"),
       "largest width*height an upload may declare (413 above), checked before decoding")
      ("timeout", po::value<double>()->default_value(120, "120")->value_name("S"),
       "seconds from a request's arrival to its answer; later ones are stopped with 504")
      ("read-timeout", po::value<double>()->default_value(10, "10")->value_name("S"),
       "longest wait for each read of a request (a stalled client is dropped after it)")
      ("http-threads", po::value<std::int64_t>()->default_value(8)->value_name("N"), "connections served at once")
      ("chat-text", po::value<std::string>()->default_value("prompt")->value_name("prompt|ignore"),
       "what the text of a chat message is: the caption's prompt (prefix), or an instruction to ignore");
  add_model_options(options);
  po::positional_options_description positional;
  try {
    const auto vm = parse("serve", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help("xcaption serve [OPTIONS]",
                 "Serves captions over HTTP with one loaded model, in the request shapes of the Hugging Face\n"
                 "inference API and OpenAI's chat completions, so that existing clients work unchanged.\n"
                 "Prints \"xcaption: serving http://HOST:PORT\" on stderr when ready.",
                 options, kDetails);
      return kOk;
    }
    server::ServerOptions o;
    o.host = vm["host"].as<std::string>();
    o.port = positive_int(vm, "port", 0, 65535);
    if (vm.count("api-key")) o.api_key = vm["api-key"].as<std::string>();
    else if (const char* env = std::getenv("XCAPTION_API_KEY"); env && *env) o.api_key = env;
    o.max_queue = static_cast<std::size_t>(positive_int(vm, "max-queue", 1, 1'000'000));
    o.max_batch = static_cast<std::size_t>(positive_int(vm, "max-batch", 1, 256));
    const double mb = vm["max-body-mb"].as<double>();
    if (!(mb > 0 && mb <= 1024)) throw UsageError("--max-body-mb must lie in (0, 1024]");
    o.max_body_bytes = static_cast<std::size_t>(std::llround(mb * 1024 * 1024));
    o.max_pixels = vm["max-pixels"].as<std::int64_t>();
    if (o.max_pixels < 1) throw UsageError("--max-pixels must be at least 1");
    o.timeout_s = vm["timeout"].as<double>();
    if (!(o.timeout_s > 0)) throw UsageError("--timeout must be positive");
    o.read_timeout_s = vm["read-timeout"].as<double>();
    if (!(o.read_timeout_s > 0 && o.read_timeout_s <= 3600)) throw UsageError("--read-timeout must lie in (0, 3600]");
    o.http_threads = positive_int(vm, "http-threads", 1, 1024);
    const std::string chat_text = vm["chat-text"].as<std::string>();
    if (chat_text == "prompt") o.chat_text = server::ChatText::Prompt;
    else if (chat_text == "ignore") o.chat_text = server::ChatText::Ignore;
    else throw UsageError(fmt::format("--chat-text must be prompt or ignore, got '{}'", chat_text));
    // The name clients see: --model as given (an ORG/NAME stays so), else the folder's name.
    std::string id = vm.count("model") ? vm["model"].as<std::string>() : model_dir(vm).filename().string();
    while (id.size() > 1 && id.back() == '/') id.pop_back();
    if (id.empty() || id == "." ) id = std::filesystem::absolute(model_dir(vm)).filename().string();
    o.model_id = id;
    compute_type(vm);  // a bad --dtype is a usage error before anything listens
    if (vm["threads"].as<int>() < 0) throw UsageError("--threads must be >= 0");
    return server::serve(o, [&] { return load_captioner(vm); });
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
