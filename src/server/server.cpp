// cpp-httplib 0.11 wiring: routes, limits, auth, metrics, streaming, disconnects and shutdown.
//
// Threads: httplib's pool serves each connection on one thread from its headers to the end of
// its answer (a stream included), so per-request bookkeeping lives in thread_locals set by the
// pre-routing handler and cleared by the logger, which runs after the answer is written. The
// engine's worker is the only thread that runs the model; HTTP threads decode and prepare images
// and wait on their Job.
#include "src/server/server.hpp"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <httplib.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

#include "src/io/result_json.hpp"
#include "src/server/engine.hpp"
#include "src/server/metrics.hpp"

namespace xcaption::server {

extern const char* const kPageHtml;  // src/server/page.html, embedded by CMake

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string dump(const ordered_json& j) { return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

// The client closed its connection while its request waited: nobody reads the answer.
struct ClientGone {};

// Per-request state of the connection this thread serves (see the file comment).
thread_local Clock::time_point t_request_start;
thread_local bool t_in_request = false;
thread_local bool t_streaming = false;  // the answer is a stream: it is logged once written
thread_local bool t_recorded = false;   // counted in the metrics already

const std::set<std::string>& known_routes() {
  static const std::set<std::string> routes = {"/", "/health", "/metrics", "/caption", "/attend",
                                               "/v1/chat/completions", "/v1/models"};
  return routes;
}
std::string route_label(const std::string& path) { return known_routes().count(path) ? path : "other"; }

// ---- the socket of a request, to notice a client that went away ---------------------------------

std::string peer_text(const sockaddr_storage& a, socklen_t len, int& port) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return {};
  port = std::atoi(serv);
  return host;
}

// httplib hands handlers no socket, so find it among this process's descriptors: the socket
// whose peer and local port are the request's. -1 when none matches.
int connection_fd(const httplib::Request& req) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof peer, local_len = sizeof local;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    int peer_port = 0, local_port = 0;
    if (peer_text(peer, peer_len, peer_port) != req.remote_addr || peer_port != req.remote_port) continue;
    peer_text(local, local_len, local_port);
    if (local_port != req.local_port) continue;
    found = fd;
    break;
  }
  ::closedir(dir);
  return found;
}

// True when the peer has closed (or reset) the connection. The request has been read whole, so
// a readable socket with nothing to peek at is the end of the stream; pipelined bytes are not.
bool peer_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<std::uint32_t>(rng()));
}

// Compares keys without stopping at the first difference (the time does not tell how much of a
// guess was right).
bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  return diff == 0;
}

bool truthy(const std::string& v) { return v == "1" || v == "true" || v == "yes" || v == "on"; }

std::string media_type(const httplib::Request& req) {
  std::string t = req.get_header_value("Content-Type");
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

// "N" (0-based, < count), "mean" or "last" -> the index, or unset for the mean.
std::optional<int> map_index(const std::string& v, const char* key, std::int64_t count) {
  if (v == "mean") return std::nullopt;
  if (v == "last") return static_cast<int>(count - 1);
  std::size_t used = 0;
  int n = -1;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || n < 0 || n >= count)
    throw HttpError(400, "invalid_parameter",
                    fmt::format("{} must be 0..{}, 'mean' or 'last', got '{}'", key, count - 1, v));
  return n;
}

// An upload and the parameters that came with it.
struct Upload {
  std::string bytes;
  std::string name = "upload";
  CaptionRequest request;
  std::map<std::string, std::string> fields;  // route options (details, layer, ...)
};

struct Body {
  std::string data;
  std::vector<httplib::MultipartFormData> parts;
};

// httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed when Debian built it):
// a burst of clients overflows it, and the kernel then resets some of their connections.
// listen() again on the bound socket raises it.
class Listener : public httplib::Server {
 public:
  void set_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

}  // namespace

class HttpServer {
 public:
  explicit HttpServer(const ServerOptions& o) : o_(o), created_(std::time(nullptr)) {
    svr_.new_task_queue = [n = o_.http_threads] { return new httplib::ThreadPool(static_cast<std::size_t>(n)); };
    const auto read_s = static_cast<time_t>(o_.read_timeout_s);
    const auto read_us = static_cast<time_t>((o_.read_timeout_s - static_cast<double>(read_s)) * 1e6);
    svr_.set_read_timeout(read_s, read_us);
    svr_.set_write_timeout(read_s, read_us);
    // An idle keep-alive connection waits at most this long for its next request; with a short
    // --read-timeout it is as short, so that a stalled client is let go within about twice it.
    svr_.set_keep_alive_timeout(std::max<time_t>(1, std::min<time_t>(5, static_cast<time_t>(std::ceil(o_.read_timeout_s)))));
    svr_.set_keep_alive_max_count(100);
    // httplib writes the headers and the body in two sends: with Nagle's algorithm the body then
    // waits for the client's delayed ACK, about 40 ms per answer.
    svr_.set_tcp_nodelay(true);
    // httplib's default sets SO_REUSEPORT, with which a second server binds the same port and
    // the kernel splits connections between the two; SO_REUSEADDR alone only allows rebinding
    // over connections left in TIME_WAIT, and a port in use is an error.
    svr_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    // Multipart framing comes on top of the image; a body declared larger than this is refused
    // before it is read.
    svr_.set_payload_max_length(o_.max_body_bytes + (1u << 16));
    svr_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return pre_route(req, res);
    });
    // A plain answer is counted before it is written, so that a client that reads it and then
    // asks /metrics sees it; a stream once it has ended.
    svr_.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!t_streaming) record(req, res);
    });
    svr_.set_logger([this](const httplib::Request& req, const httplib::Response& res) { log(req, res); });
    svr_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // our own answers carry their error already
      std::string code = "http_error", message = fmt::format("HTTP error {}", res.status);
      if (res.status == 404) {
        code = "not_found";
        message = fmt::format("no route {} {} (see GET / or README \"Server\")", req.method, req.path);
      } else if (res.status == 413) {
        code = "body_too_large";
        message = "the request body is larger than this server accepts (--max-body-mb)";
      } else if (res.status == 400) {
        code = "bad_request";
        message = "malformed HTTP request";
      }
      res.set_content(error_body(res.status, code, message), "application/json");
    });
    svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content(error_body(500, "internal_error", "internal error"), "application/json");
    });
    routes();
  }

  int bind() {
    const int port = o_.port == 0 ? svr_.bind_to_any_port(o_.host) : svr_.bind_to_port(o_.host, o_.port) ? o_.port : -1;
    if (port > 0) svr_.set_backlog(SOMAXCONN);
    return port;
  }
  void listen() { svr_.listen_after_bind(); }
  /// Waits until listen() runs: httplib's stop() does nothing before that.
  void wait_listening() const {
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void stop() { svr_.stop(); }

  void set_ready(Captioner* captioner, Engine* engine) {
    info_ = captioner->info();
    captioner_ = captioner;
    engine_.store(engine);
  }
  void start_draining() { draining_ = true; }
  std::int64_t in_flight() const { return in_flight_; }

 private:
  // ---- bookkeeping ------------------------------------------------------------------------------

  httplib::Server::HandlerResponse pre_route(const httplib::Request&, httplib::Response& res) {
    if (t_in_request) --in_flight_;  // the last answer on this thread failed before it was logged
    t_in_request = true;
    t_streaming = t_recorded = false;
    t_request_start = Clock::now();
    ++in_flight_;
    if (draining_) {
      send_error(res, 503, "shutting_down", "the server is shutting down");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void record(const httplib::Request& req, const httplib::Response& res) {
    if (t_recorded) return;
    t_recorded = true;
    metrics_.record(route_label(req.path), res.status, t_in_request ? seconds_since(t_request_start) : 0.0);
  }

  void log(const httplib::Request& req, const httplib::Response& res) {
    record(req, res);
    t_recorded = false;  // an answer to a malformed request, with no pre-routing, is counted too
    if (t_in_request) {
      t_in_request = false;
      --in_flight_;
    }
  }

  static void send_error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
    res.status = status;
    res.set_content(error_body(status, code, message), "application/json");
    if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
    if (status == 429 || status == 503) res.set_header("Retry-After", "1");
  }

  // Runs a handler, answering what it throws with the JSON error for it.
  template <class F>
  void guard(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const HttpError& e) {
      send_error(res, e.status(), e.code(), e.what());
    } catch (const ClientGone&) {
      res.status = 499;  // nginx's "client closed request": for the metrics, nobody reads it
      res.body.clear();
    } catch (const FormatError& e) {
      send_error(res, 400, "invalid_image", e.what());
    } catch (const InputError& e) {
      send_error(res, 400, "invalid_request", e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "internal_error", e.what());
    }
  }

  void check_key(const httplib::Request& req) const {
    if (o_.api_key.empty()) return;
    std::string got;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) got = auth.substr(7);
    else got = req.get_header_value("X-API-Key");
    if (got.empty())
      throw HttpError(401, "missing_api_key", "this server needs an API key: send Authorization: Bearer KEY");
    if (!constant_time_equal(got, o_.api_key)) throw HttpError(401, "invalid_api_key", "the API key is wrong");
  }

  Engine& engine() const {
    Engine* e = engine_.load();
    if (!e) throw HttpError(503, "model_loading", "the model is still loading; retry shortly");
    return *e;
  }

  // ---- bodies and uploads -----------------------------------------------------------------------

  Body read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) const {
    Body b;
    std::size_t total = 0;
    bool too_big = false, too_many = false;
    const std::size_t max = o_.max_body_bytes;
    auto take = [&](std::string& into, const char* data, std::size_t n) {
      if (total + n > max) {
        too_big = true;
        return false;
      }
      total += n;
      into.append(data, n);
      return true;
    };
    bool ok;
    const bool multipart = req.is_multipart_form_data();
    if (multipart) {
      ok = reader(
          [&](const httplib::MultipartFormData& part) {
            if (b.parts.size() >= 64) {
              too_many = true;
              return false;
            }
            b.parts.push_back(part);
            b.parts.back().content.clear();
            return true;
          },
          [&](const char* data, std::size_t n) { return !b.parts.empty() && take(b.parts.back().content, data, n); });
    } else {
      ok = reader([&](const char* data, std::size_t n) { return take(b.data, data, n); });
    }
    if (too_big || res.status == 413)
      throw HttpError(413, "body_too_large",
                      fmt::format("the request body is larger than this server's limit of {} bytes (--max-body-mb)", max));
    if (too_many) throw HttpError(400, "invalid_body", "the multipart body has more than 64 parts");
    if (!ok)
      throw HttpError(400, "invalid_body", multipart ? "the multipart body is malformed or cut short"
                                                     : "the request body is cut short or malformed");
    return b;
  }

  // /caption and /attend: raw image bytes, multipart with a `file` part, or Hugging Face's JSON
  // {"inputs": BASE64, "parameters": {...}}; generation fields and route options (`options`) as
  // form fields or query parameters.
  Upload upload(const httplib::Request& req, Body& body, const std::set<std::string>& options) const {
    Upload u;
    auto field = [&](const std::string& name, const std::string& value) {
      if (is_generation_field(name)) set_generation_field(u.request, name, value);
      else if (options.count(name)) u.fields[name] = value;
      else throw HttpError(400, "unknown_parameter", fmt::format("unknown parameter '{}' for {}", name, req.path));
    };
    for (const auto& [name, value] : req.params) field(name, value);
    const std::string type = media_type(req);
    if (req.is_multipart_form_data()) {
      bool have_file = false;
      for (auto& part : body.parts) {
        if (part.name == "file" || part.name == "image") {
          if (have_file) throw HttpError(400, "too_many_images", "one image per request: several file parts");
          have_file = true;
          u.bytes = std::move(part.content);
          if (!part.filename.empty()) u.name = part.filename;
        } else {
          field(part.name, part.content);
        }
      }
      if (!have_file) throw HttpError(400, "missing_image", "the multipart body has no 'file' part");
    } else if (type == "application/json") {
      json j = json::parse(body.data, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) throw HttpError(400, "invalid_json", "the request body is not a JSON object");
      if (!j.contains("inputs") || !j["inputs"].is_string())
        throw HttpError(400, "missing_image", "a JSON body needs \"inputs\": the image as base64 or a data: URL");
      const std::string inputs = j["inputs"].get<std::string>();
      if (inputs.rfind("data:", 0) == 0 || inputs.find("://") != std::string::npos) {
        u.bytes = decode_data_url(inputs);
      } else {
        auto bytes = base64_decode(inputs);
        if (!bytes) throw HttpError(400, "invalid_base64", "\"inputs\" is not valid base64");
        u.bytes = std::move(*bytes);
      }
      if (j.contains("parameters")) {
        if (!j["parameters"].is_object()) throw HttpError(400, "invalid_parameter", "\"parameters\" must be an object");
        for (auto it = j["parameters"].begin(); it != j["parameters"].end(); ++it) {
          if (is_generation_field(it.key())) set_generation_field(u.request, it.key(), it.value());
          else if (options.count(it.key())) u.fields[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
          else throw HttpError(400, "unknown_parameter", fmt::format("unknown parameter '{}' for {}", it.key(), req.path));
        }
      }
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "inputs" && it.key() != "parameters")
          throw HttpError(400, "unknown_parameter", fmt::format("unknown key '{}' in the JSON body", it.key()));
    } else if (type.empty() || type.rfind("image/", 0) == 0 || type == "application/octet-stream" ||
               (type == "application/x-www-form-urlencoded" && probe_image(body.data))) {
      // The last: curl --data-binary @cat.png sends an image with curl's default form type.
      u.bytes = std::move(body.data);
    } else {
      throw HttpError(415, "unsupported_media_type",
                      fmt::format("{} takes the image bytes (Content-Type image/*), multipart/form-data with a 'file' "
                                  "part, or application/json; got Content-Type '{}'",
                                  req.path, req.get_header_value("Content-Type")));
    }
    if (u.bytes.empty()) throw HttpError(400, "missing_image", "the request holds no image");
    return u;
  }

  // Decodes, checks and prepares the image on this thread, then queues it.
  std::shared_ptr<Job> submit(const std::string& bytes, const std::string& name, const CaptionRequest& request,
                              RgbImage* keep_image) {
    Engine& e = engine();
    check_image_header(bytes, o_.max_pixels);
    // Settings errors answered now rather than after the engine ran (and, for a stream, after
    // its 200 went out).
    const auto prompt = static_cast<std::int64_t>(captioner_->prompt_ids(request).size());
    if (request.generation.max_new_tokens && prompt + *request.generation.max_new_tokens > info_.n_positions)
      throw HttpError(400, "invalid_parameter",
                      fmt::format("max_new_tokens {} with a {}-token prompt exceeds the decoder's {} positions",
                                  *request.generation.max_new_tokens, prompt, info_.n_positions));
    ImageLimits limits;
    limits.max_pixels = o_.max_pixels;
    limits.max_bytes = std::max<std::int64_t>(limits.max_bytes, static_cast<std::int64_t>(bytes.size()));
    RgbImage image = decode_image({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, name, limits);
    auto job = std::make_shared<Job>(captioner_->prepare(image), request,
                                     t_request_start + std::chrono::duration_cast<Clock::duration>(
                                                           std::chrono::duration<double>(o_.timeout_s)));
    if (!e.submit(job))
      throw HttpError(429, "queue_full",
                      fmt::format("the engine's queue is full ({} requests waiting); retry later", o_.max_queue));
    if (keep_image) *keep_image = std::move(image);
    return job;
  }

  HttpError timeout_error() const {
    return HttpError(504, "timeout", fmt::format("no caption within this server's --timeout of {} s", o_.timeout_s));
  }

  const CaptionResult& wait(const httplib::Request& req, Job& job) const {
    const int fd = connection_fd(req);
    while (!job.wait_until(std::min(job.deadline(), Clock::now() + std::chrono::milliseconds(100)))) {
      if (Clock::now() >= job.deadline()) {
        job.cancel();
        throw timeout_error();
      }
      if (peer_closed(fd)) {
        job.cancel();
        throw ClientGone{};
      }
    }
    if (!job.error().empty())
      throw HttpError(job.error_status(), job.error_status() == 400 ? "invalid_request" : "internal_error", job.error());
    if (job.result()->cancelled) throw timeout_error();
    return *job.result();
  }

  // ---- routes -----------------------------------------------------------------------------------

  void routes() {
    svr_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                     "img-src data: blob:; connect-src 'self'");
      res.set_header("Cache-Control", "no-cache");
      res.set_content(kPageHtml, "text/html; charset=utf-8");
    });
    svr_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      Engine* e = engine_.load();
      if (!e) {
        res.status = 503;
        res.set_content(dump(json{{"status", "loading"},
                                  {"error", json::parse(error_body(503, "model_loading", "the model is still loading"))["error"]}}),
                        "application/json");
        return;
      }
      const EngineStats s = e->stats();
      res.set_content(dump(json{{"status", "ok"},
                                {"model", o_.model_id},
                                {"family", info_.family},
                                {"queue_depth", s.queue_depth},
                                {"running", s.running}}),
                      "application/json");
    });
    svr_.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      guard(res, [&] {
        check_key(req);
        Engine* e = engine_.load();
        res.set_content(metrics_.render(e ? e->stats() : EngineStats{}, e != nullptr, in_flight_),
                        "text/plain; version=0.0.4; charset=utf-8");
      });
    });
    svr_.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      guard(res, [&] {
        check_key(req);
        engine();
        res.set_content(dump(json{{"object", "list"},
                                  {"data",
                                   {{{"id", o_.model_id},
                                     {"object", "model"},
                                     {"created", created_},
                                     {"owned_by", "xcaption"},
                                     {"family", info_.family}}}}}),
                        "application/json");
      });
    });
    svr_.Post("/caption", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      guard(res, [&] { caption(req, res, reader); });
    });
    svr_.Post("/attend", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      guard(res, [&] { attend(req, res, reader); });
    });
    svr_.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
                guard(res, [&] { chat(req, res, reader); });
              });
    // The wrong method on a known route: 405 rather than 404.
    auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request& req, httplib::Response& res) {
        send_error(res, 405, "method_not_allowed", fmt::format("{} takes {}, not {}", req.path, allow, req.method));
        res.set_header("Allow", allow);
      };
    };
    for (const char* path : {"/caption", "/attend", "/v1/chat/completions"}) svr_.Get(path, not_allowed("POST"));
    for (const char* path : {"/", "/health", "/metrics", "/v1/models"}) svr_.Post(path, not_allowed("GET"));
  }

  void caption(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    Body body = read_body(req, res, reader);
    check_key(req);
    engine();
    Upload u = upload(req, body, {"details"});
    const bool details = u.fields.count("details") && truthy(u.fields["details"]);
    auto job = submit(u.bytes, u.name, u.request, nullptr);
    const CaptionResult& r = wait(req, *job);
    res.status = 200;
    if (details) res.set_content(dump(caption_result_json(u.name, r)), "application/json");
    else res.set_content(dump(json::array({{{"generated_text", display_text(r)}}})), "application/json");
  }

  void attend(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    Body body = read_body(req, res, reader);
    check_key(req);
    engine();
    Upload u = upload(req, body, {"layer", "head", "rollout", "overlay", "weights"});
    viz::MapOptions map;
    map.layer = map_index(u.fields.count("layer") ? u.fields["layer"] : "last", "layer", info_.decoder_layers);
    map.head = map_index(u.fields.count("head") ? u.fields["head"] : "mean", "head", info_.decoder_heads);
    map.rollout = u.fields.count("rollout") && truthy(u.fields["rollout"]);
    if (map.rollout) {
      if (u.fields.count("layer") && u.fields["layer"] != "mean")
        throw HttpError(400, "invalid_parameter", "rollout combines all layers; leave layer out");
      map.layer.reset();
    }
    const bool overlay = u.fields.count("overlay") && truthy(u.fields["overlay"]);
    const bool weights = u.fields.count("weights") && truthy(u.fields["weights"]);
    u.request.capture_cross_attention = true;
    RgbImage image;
    auto job = submit(u.bytes, u.name, u.request, &image);
    const CaptionResult& r = wait(req, *job);
    const auto tokens = viz::token_attentions(*captioner_, r, map);

    ordered_json j;
    j["image"] = u.name;
    j["caption"] = r.caption;
    j["prompt_ids"] = r.prompt_ids;
    put_task_fields(j, r);  // as attend --json
    j["grid"] = {r.cross_attention.grid_rows, r.cross_attention.grid_cols};
    j["tokens"] = ordered_json::array();
    const RgbImage base = overlay ? viz::fit_image(image, 320) : RgbImage{};
    for (const auto& t : tokens) {
      ordered_json rows = ordered_json::array();
      for (int y = 0; y < t.map.rows; ++y) {
        ordered_json row = ordered_json::array();
        // As attend --json: the shortest decimal that reads back as the same float.
        for (int x = 0; x < t.map.cols; ++x) row.push_back(std::stod(fmt::format("{}", t.map.at(y, x))));
        rows.push_back(std::move(row));
      }
      ordered_json tj = {{"token", t.token}, {"id", t.id}, {"map", std::move(rows)}, {"word", t.word}, {"special", t.special}};
      if (overlay) tj["overlay_png"] = base64_encode(viz::encode_png(viz::overlay(base, t.map)));
      j["tokens"].push_back(std::move(tj));
    }
    j["image_size"] = {image.width, image.height};
    j["layers"] = info_.decoder_layers;
    j["heads"] = info_.decoder_heads;
    j["timings_ms"] = {{"preprocess", r.timings.preprocess_ms},
                       {"encoder", r.timings.encoder_ms},
                       {"cross_kv", r.timings.cross_kv_ms},
                       {"decode", r.timings.decode_ms},
                       {"total", seconds_since(t_request_start) * 1000}};
    if (weights) {
      const CrossAttention& a = r.cross_attention;
      // Little-endian float32, [step][layer][head][encoder token], for clients that reduce the
      // maps themselves (the page's layer and head selectors).
      j["attention"] = {{"steps", a.steps},           {"layers", a.layers},
                        {"heads", a.heads},           {"encoder_tokens", a.encoder_tokens},
                        {"grid_offset", a.grid_offset},
                        {"weights_f32", base64_encode({reinterpret_cast<const char*>(a.weights.data()),
                                                       a.weights.size() * sizeof(float)})}};
    }
    res.set_content(dump(j), "application/json");
  }

  void chat(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    Body body = read_body(req, res, reader);
    check_key(req);
    engine();
    const std::string type = media_type(req);
    if (!type.empty() && type != "application/json")
      throw HttpError(415, "unsupported_media_type",
                      fmt::format("/v1/chat/completions takes application/json, got '{}'", req.get_header_value("Content-Type")));
    if (req.is_multipart_form_data()) throw HttpError(415, "unsupported_media_type", "/v1/chat/completions takes application/json");
    ChatRequest c = parse_chat_request(body.data, o_.chat_text);
    auto job = submit(c.image, "image_url", c.request, nullptr);
    const std::string id = random_id("chatcmpl-");
    const std::int64_t created = std::time(nullptr);
    if (!c.stream) {
      const CaptionResult& r = wait(req, *job);
      res.set_content(dump(chat_completion_json(id, created, o_.model_id, r, info_)), "application/json");
      return;
    }
    auto state = std::make_shared<StreamState>();
    state->job = job;
    state->id = id;
    state->created = created;
    state->include_usage = c.include_usage;
    state->ids = captioner_->prompt_ids(c.request);
    state->prompt = state->ids.size();
    state->fd = connection_fd(req);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    t_streaming = true;
    res.set_chunked_content_provider("text/event-stream", [this, state](std::size_t, httplib::DataSink& sink) {
      return stream(*state, sink);
    });
  }

  struct StreamState {
    std::shared_ptr<Job> job;
    std::string id;
    std::int64_t created = 0;
    bool include_usage = false;
    std::vector<std::int64_t> ids;  // prompt, then the tokens generated so far
    std::size_t prompt = 0;
    std::deque<std::int64_t> pending;  // reported by the engine, not sent yet
    std::string sent;               // caption text sent so far
    bool started = false, finished = false;
    int fd = -1;
  };

  // One call of the chunked provider: the opening chunk, or the next text, or the end.
  bool stream(StreamState& s, httplib::DataSink& sink) {
    auto send = [&](const std::string& data) {
      const std::string event = "data: " + data + "\n\n";
      return sink.write(event.data(), event.size());
    };
    auto chunk = [&](const json& delta, const std::string& reason) {
      return dump(chat_chunk_json(s.id, s.created, o_.model_id, delta, reason));
    };
    auto end = [&](const std::optional<std::string>& error) {
      if (error) send(*error);
      send("[DONE]");
      sink.done();
      return true;
    };
    if (!s.started) {
      s.started = true;
      if (send(chunk({{"role", "assistant"}, {"content", ""}}, ""))) return true;
      s.job->cancel();
      return false;
    }
    for (;;) {
      if (s.pending.empty() && !s.finished) {
        std::vector<std::int64_t> fresh;
        s.finished = s.job->wait_tokens(std::min(s.job->deadline(), Clock::now() + std::chrono::milliseconds(100)), fresh);
        s.pending.insert(s.pending.end(), fresh.begin(), fresh.end());
      }
      if (s.finished && !s.job->error().empty()) {
        const Job& j = *s.job;
        return end(error_body(j.error_status(), j.error_status() == 400 ? "invalid_request" : "internal_error", j.error()));
      }
      // One event per token, even when several arrived together (a fast model, a beam search
      // ending); a token that completes no character yet waits for the next.
      while (!s.pending.empty()) {
        s.ids.push_back(s.pending.front());
        s.pending.pop_front();
        std::string text = captioner_->decode_tokens(s.ids, /*skip_special_tokens=*/true);
        text.resize(stable_text_length(text));
        if (text.size() > s.sent.size() && text.compare(0, s.sent.size(), s.sent) == 0) {
          const std::string delta = text.substr(s.sent.size());
          s.sent = std::move(text);
          if (send(chunk({{"content", delta}}, ""))) return true;
          s.job->cancel();  // the client went away
          return false;
        }
      }
      if (s.finished) {
        const CaptionResult& r = *s.job->result();
        if (r.cancelled) return end(error_body(504, "timeout", timeout_error().what()));
        // Whatever the per-token text lacks (a character held back at the very end).
        if (r.caption.size() > s.sent.size() && r.caption.compare(0, s.sent.size(), s.sent) == 0)
          send(chunk({{"content", r.caption.substr(s.sent.size())}}, ""));
        json last = chat_chunk_json(s.id, s.created, o_.model_id, json::object(), finish_reason(r, info_));
        last["usage"] = usage_json(r);
        send(dump(last));
        if (s.include_usage) {
          json usage = chat_chunk_json(s.id, s.created, o_.model_id, json::object(), "");
          usage["choices"] = json::array();
          usage["usage"] = usage_json(r);
          send(dump(usage));
        }
        return end(std::nullopt);
      }
      if (Clock::now() >= s.job->deadline()) {
        s.job->cancel();
        return end(error_body(504, "timeout", timeout_error().what()));
      }
      if (peer_closed(s.fd)) {
        s.job->cancel();
        return false;
      }
    }
  }

  ServerOptions o_;
  std::int64_t created_;
  Listener svr_;
  Metrics metrics_;
  ModelInfo info_;                       // set before engine_ is published
  Captioner* captioner_ = nullptr;       // likewise
  std::atomic<Engine*> engine_{nullptr};
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> in_flight_{0};
};

namespace {

// SIGINT/SIGTERM blocked in every thread created after this, and received with sigtimedwait.
class SignalMask {
 public:
  SignalMask() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SignalMask() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalMask(const SignalMask&) = delete;
  SignalMask& operator=(const SignalMask&) = delete;
  /// The signal received within `ms`, or 0.
  int wait(int ms) const {
    timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
    const int sig = sigtimedwait(&set_, nullptr, &ts);
    return sig > 0 ? sig : 0;
  }

 private:
  sigset_t set_{}, old_{};
};

}  // namespace

int serve(const ServerOptions& options, const std::function<Captioner()>& load) {
  const SignalMask signals;
  HttpServer http(options);
  const int port = http.bind();
  if (port <= 0)
    throw InputError(fmt::format("cannot listen on {}:{} (address in use, or not an address of this machine)",
                                 options.host, options.port));
  std::thread listener([&] { http.listen(); });
  http.wait_listening();
  const bool v6 = options.host.find(':') != std::string::npos;
  const std::string url = fmt::format("http://{}{}{}:{}", v6 ? "[" : "", options.host, v6 ? "]" : "", port);
  std::fprintf(stderr, "xcaption: loading the model (%s/health answers 503 until it is ready)\n", url.c_str());
  std::fflush(stderr);

  std::optional<Captioner> captioner;
  std::exception_ptr load_error;
  std::atomic<bool> loaded{false};
  std::thread loader([&] {
    try {
      captioner.emplace(load());
    } catch (...) {
      load_error = std::current_exception();
    }
    loaded = true;
  });
  int sig = 0;
  while (!loaded && sig == 0) sig = signals.wait(100);
  loader.join();  // a model load cannot be interrupted; it is seconds at most
  if (load_error || sig != 0) {
    http.stop();
    listener.join();
    if (load_error) std::rethrow_exception(load_error);
    return 0;
  }
  auto engine = std::make_unique<Engine>(*captioner, options.max_queue, options.max_batch);
  http.set_ready(&*captioner, engine.get());
  std::fprintf(stderr, "xcaption: serving %s (model %s; POST /caption, /attend, /v1/chat/completions; GET / for the page)\n",
               url.c_str(), options.model_id.c_str());
  std::fflush(stderr);

  while (sig == 0) sig = signals.wait(1000);
  http.start_draining();
  std::fprintf(stderr, "xcaption: %s: finishing %lld request(s) in flight, refusing new ones (again to quit now)\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", static_cast<long long>(http.in_flight()));
  std::fflush(stderr);
  const auto limit = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options.timeout_s + 5));
  while ((http.in_flight() > 0 || engine->pending() > 0) && Clock::now() < limit) {
    if (const int again = signals.wait(50)) std::_Exit(128 + again);
  }
  http.stop();
  listener.join();
  engine.reset();
  std::fprintf(stderr, "xcaption: stopped\n");
  return 0;
}

}  // namespace xcaption::server
