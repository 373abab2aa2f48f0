// xcaption serve against real HTTP clients on a free loopback port: every answer is compared with
// the CLI's caption of the same image, and hostile requests get their status while the server
// keeps serving.
#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "src/server/api.hpp"
#include "tests/e2e/server_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;

namespace {
const std::filesystem::path kRoot = XCAPTION_SOURCE_DIR;
const std::filesystem::path kData = XCAPTION_TEST_DATA;
const std::string kShapes = (kRoot / "models" / "shapes-small").string();
const std::string kTiny = (kData / "tiny-vit-gpt2").string();

std::vector<std::string> sample_images() {
  std::vector<std::string> out;
  for (const char* n : {"scene_000002.png", "scene_000005.png", "scene_000009.png", "scene_000014.png",
                        "scene_000017.png", "scene_000019.png", "shapes.png"})
    out.push_back((kRoot / "samples" / "data" / n).string());
  return out;
}

std::string data_url(const std::string& bytes) { return "data:image/png;base64," + xcaption::server::base64_encode(bytes); }

json chat_request(const std::string& image_bytes, const std::string& text = "", json extra = json::object()) {
  json content = json::array();
  if (!text.empty()) content.push_back({{"type", "text"}, {"text", text}});
  content.push_back({{"type", "image_url"}, {"image_url", {{"url", data_url(image_bytes)}}}});
  json j = {{"model", "shapes-small"}, {"messages", {{{"role", "user"}, {"content", content}}}}};
  j.update(extra);
  return j;
}

// The data: events of a server-sent event stream, in order.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
  }
  return out;
}

// The value of an unlabelled (or exactly labelled) sample in Prometheus text, or -1.
double metric(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  return -1;
}

json error_of(const httplib::Result& r) {
  json j = json::parse(r->body, nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"] : json();
}

// A PNG that declares width x height but holds almost nothing: a decompression bomb's header.
std::string bomb_png(std::uint32_t width, std::uint32_t height) {
  std::string s("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (std::uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  s += std::string("\x08\x02\0\0\0\0\0\0\0", 9);                   // depth, colour, ... + a CRC
  s += std::string("\0\0\0\0IDAT\0\0\0\0\0\0\0\0IEND\xae\x42\x60\x82", 24);
  return s;
}
}  // namespace

TEST_CASE("serve: /caption raw, multipart, JSON and details give the CLI's caption; /health, /v1/models, /metrics",
          "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1"});
  auto cli = server.client();
  const std::string image = sample_images()[0];
  const std::string bytes = read_file(image);
  const std::string want = cli_captions(kShapes, {image}).at(image);

  auto health = cli.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["model"] == kShapes);
  CHECK(json::parse(health->body)["status"] == "ok");
  auto models = cli.Get("/v1/models");
  REQUIRE(models);
  CHECK(json::parse(models->body)["data"][0]["id"] == kShapes);

  auto raw = cli.Post("/caption", bytes, "image/png");
  REQUIRE(raw);
  INFO(raw->body);
  CHECK(raw->status == 200);
  CHECK(json::parse(raw->body) == json::array({{{"generated_text", want}}}));

  const std::string want_beams = cli_captions(kShapes, {image}, "--beams 2 --max-new-tokens 6").at(image);
  auto multipart = cli.Post("/caption", httplib::MultipartFormDataItems{{"file", bytes, "scene.png", "image/png"},
                                                                        {"beams", "2", "", ""},
                                                                        {"max_new_tokens", "6", "", ""}});
  REQUIRE(multipart);
  CHECK(multipart->status == 200);
  CHECK(json::parse(multipart->body)[0]["generated_text"] == want_beams);

  auto hf = cli.Post("/caption", json{{"inputs", xcaption::server::base64_encode(bytes)}}.dump(), "application/json");
  REQUIRE(hf);
  CHECK(json::parse(hf->body)[0]["generated_text"] == want);

  // ?details=true: the object caption --json prints, key for key.
  const CliResult jr = run_cli("caption --threads 1 --json --model '" + kShapes + "' '" + image + "'");
  REQUIRE(jr.exit_code == 0);
  const json want_json = json::parse(jr.out);
  auto details = cli.Post("/caption?details=true", bytes, "image/png");
  REQUIRE(details);
  const json got = json::parse(details->body);
  std::set<std::string> want_keys, got_keys;
  for (auto it = want_json.begin(); it != want_json.end(); ++it) want_keys.insert(it.key());
  for (auto it = got.begin(); it != got.end(); ++it) got_keys.insert(it.key());
  CHECK(got_keys == want_keys);
  for (const char* k : {"caption", "prompt_ids", "token_ids", "tokens", "num_beams"}) CHECK(got[k] == want_json[k]);
  REQUIRE(got["logprobs"].size() == want_json["logprobs"].size());
  for (std::size_t i = 0; i < got["logprobs"].size(); ++i)
    CHECK(got["logprobs"][i].get<double>() == Approx(want_json["logprobs"][i].get<double>()).margin(1e-5));
  CHECK(got["image"] == "upload");

  auto metrics = cli.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  const std::string& m = metrics->body;
  INFO(m);
  CHECK(metric(m, R"(xcaption_requests_total{route="/caption",status="200"})") == 4);
  CHECK(metric(m, R"(xcaption_requests_total{route="/health",status="200"})") == 1);
  CHECK(metric(m, R"(xcaption_request_duration_seconds_count{route="/caption"})") == 4);
  CHECK(metric(m, R"(xcaption_request_duration_seconds_bucket{route="/caption",le="+Inf"})") == 4);
  CHECK(metric(m, "xcaption_images_total") == 4);
  CHECK(metric(m, "xcaption_tokens_generated_total") >=
        static_cast<double>(3 * want_json["token_ids"].size()));
  CHECK(metric(m, "xcaption_queue_depth") == 0);
  CHECK(metric(m, "xcaption_model_loaded") == 1);
  CHECK(m.find("# TYPE xcaption_request_duration_seconds histogram") != std::string::npos);

  CHECK(server.stop(SIGTERM) == 0);
  CHECK(server.stderr_text().find("xcaption: stopped") != std::string::npos);
}

TEST_CASE("serve: /attend gives attend --json's caption and maps, with overlays and raw weights", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1"});
  auto cli = server.client();
  const std::string image = sample_images()[1];
  const CliResult jr = run_cli("attend --threads 1 --json --model '" + kShapes + "' '" + image + "'");
  REQUIRE(jr.exit_code == 0);
  const json want = json::parse(jr.out);
  auto r = cli.Post("/attend?overlay=true&weights=true", read_file(image), "image/png");
  REQUIRE(r);
  INFO(r->body.substr(0, 400));
  REQUIRE(r->status == 200);
  const json got = json::parse(r->body);
  CHECK(got["caption"] == want["caption"]);
  CHECK(got["grid"] == want["grid"]);
  CHECK(got["prompt_ids"] == want["prompt_ids"]);
  REQUIRE(got["tokens"].size() == want["tokens"].size());
  for (std::size_t t = 0; t < got["tokens"].size(); ++t) {
    const json& g = got["tokens"][t];
    const json& w = want["tokens"][t];
    CHECK(g["id"] == w["id"]);
    CHECK(g["token"] == w["token"]);
    REQUIRE(g["map"].size() == w["map"].size());
    double sum = 0;
    for (std::size_t y = 0; y < g["map"].size(); ++y)
      for (std::size_t x = 0; x < g["map"][y].size(); ++x) {
        CHECK(g["map"][y][x].get<double>() == Approx(w["map"][y][x].get<double>()).margin(1e-6));
        sum += g["map"][y][x].get<double>();
      }
    CHECK(sum == Approx(1.0).margin(1e-4));
    const auto png = xcaption::server::base64_decode(g["overlay_png"].get<std::string>());
    REQUIRE(png);
    CHECK(png->substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  }
  const json& a = got["attention"];
  const auto weights = xcaption::server::base64_decode(a["weights_f32"].get<std::string>());
  REQUIRE(weights);
  CHECK(weights->size() == 4 * a["steps"].get<std::size_t>() * a["layers"].get<std::size_t>() *
                               a["heads"].get<std::size_t>() * a["encoder_tokens"].get<std::size_t>());
  CHECK(a["steps"] == got["tokens"].size());

  // A layer and head chosen by query, as attend --layer 0 --head 1.
  const CliResult l0 = run_cli("attend --threads 1 --json --layer 0 --head 1 --model '" + kShapes + "' '" + image + "'");
  REQUIRE(l0.exit_code == 0);
  auto r0 = cli.Post("/attend?layer=0&head=1", read_file(image), "image/png");
  REQUIRE(r0);
  REQUIRE(r0->status == 200);
  const json w0 = json::parse(l0.out), g0 = json::parse(r0->body);
  CHECK(g0["tokens"][0]["map"][0][0].get<double>() == Approx(w0["tokens"][0]["map"][0][0].get<double>()).margin(1e-6));
  auto bad = cli.Post("/attend?layer=99", read_file(image), "image/png");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(error_of(bad)["code"] == "invalid_parameter");
}

TEST_CASE("serve: /v1/chat/completions, plain and streamed, gives the CLI's caption", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1"});
  auto cli = server.client();
  const std::string image = sample_images()[2];
  const std::string bytes = read_file(image);
  const std::string want = cli_captions(kShapes, {image}).at(image);

  auto plain = cli.Post("/v1/chat/completions", chat_request(bytes).dump(), "application/json");
  REQUIRE(plain);
  INFO(plain->body);
  REQUIRE(plain->status == 200);
  const json c = json::parse(plain->body);
  CHECK(c["object"] == "chat.completion");
  CHECK(c["model"] == kShapes);
  CHECK(c["choices"][0]["message"]["content"] == want);
  CHECK(c["choices"][0]["finish_reason"] == "stop");
  CHECK(c["usage"]["completion_tokens"].get<int>() >= 2);
  CHECK(c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"].get<int>() + c["usage"]["completion_tokens"].get<int>());

  // The text part is the prompt, as caption --prompt; max_tokens is max_new_tokens.
  const std::string want_prompt = cli_captions(kShapes, {image}, "--prompt 'a small' --max-new-tokens 4").at(image);
  auto prompted = cli.Post("/v1/chat/completions", chat_request(bytes, "a small", {{"max_tokens", 4}}).dump(),
                           "application/json");
  REQUIRE(prompted);
  REQUIRE(prompted->status == 200);
  CHECK(json::parse(prompted->body)["choices"][0]["message"]["content"] == want_prompt);

  auto streamed = cli.Post("/v1/chat/completions",
                           chat_request(bytes, "", {{"stream", true}, {"stream_options", {{"include_usage", true}}}}).dump(),
                           "application/json");
  REQUIRE(streamed);
  REQUIRE(streamed->status == 200);
  CHECK(streamed->get_header_value("Content-Type").rfind("text/event-stream", 0) == 0);
  const auto events = sse_events(streamed->body);
  INFO(streamed->body);
  REQUIRE(events.size() >= 4);
  CHECK(events.back() == "[DONE]");
  std::string text;
  int content_chunks = 0;
  std::string finish;
  bool usage = false;
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    CHECK(e["object"] == "chat.completion.chunk");
    CHECK(e["id"] == json::parse(events[0])["id"]);
    if (e["choices"].empty()) {
      usage = e["usage"]["completion_tokens"] == c["usage"]["completion_tokens"];
      continue;
    }
    const json& d = e["choices"][0]["delta"];
    if (i == 0) CHECK(d["role"] == "assistant");
    if (d.contains("content") && !d["content"].get<std::string>().empty()) {
      text += d["content"].get<std::string>();
      ++content_chunks;
    }
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  CHECK(text == want);
  CHECK(content_chunks >= 2);  // token by token, not one piece at the end
  CHECK(finish == "stop");
  CHECK(usage);

  // What the server cannot do: clear 400s (never a fetch), and 415 for another body type.
  auto expect = [&](const json& body, int status, const std::string& code) {
    auto r = cli.Post("/v1/chat/completions", body.dump(), "application/json");
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == status);
    CHECK(error_of(r)["code"] == code);
    CHECK(error_of(r)["message"].get<std::string>().size() > 10);
  };
  expect(chat_request(bytes, "", {{"n", 2}}), 400, "unsupported_parameter");
  expect(chat_request(bytes, "", {{"temperature", 0.8}}), 400, "unsupported_parameter");
  json remote = chat_request(bytes);
  remote["messages"][0]["content"][0]["image_url"]["url"] = "http://127.0.0.1:" + std::to_string(server.port) + "/health";
  expect(remote, 400, "unsupported_url");
  json garbage = chat_request(bytes);
  garbage["messages"][0]["content"][0]["image_url"]["url"] = "data:image/png;base64,%%%not base64%%%";
  expect(garbage, 400, "invalid_base64");
  auto invalid = cli.Post("/v1/chat/completions", "{\"messages\": [", "application/json");
  REQUIRE(invalid);
  CHECK(invalid->status == 400);
  CHECK(error_of(invalid)["code"] == "invalid_json");
  auto form = cli.Post("/v1/chat/completions", "a=b", "application/x-www-form-urlencoded");
  REQUIRE(form);
  CHECK(form->status == 415);
  // The remote URL above was not fetched: only the test's own /health call reached the server.
  auto m = cli.Get("/metrics");
  REQUIRE(m);
  CHECK(metric(m->body, R"(xcaption_requests_total{route="/health",status="200"})") == -1);
}

TEST_CASE("serve: 16 concurrent clients each get the CLI's caption of their image", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1"});
  const auto images = sample_images();
  const auto want = cli_captions(kShapes, images);
  std::vector<std::string> got(16);
  std::vector<int> status(16, 0);
  std::vector<std::thread> clients;
  for (int i = 0; i < 16; ++i)
    clients.emplace_back([&, i] {
      auto cli = server.client();
      const std::string& image = images[static_cast<std::size_t>(i) % images.size()];
      const std::string bytes = read_file(image);
      if (i % 2 == 0) {
        auto r = cli.Post("/caption", bytes, "image/png");
        if (!r) return;
        status[static_cast<std::size_t>(i)] = r->status;
        if (r->status == 200) got[static_cast<std::size_t>(i)] = json::parse(r->body)[0]["generated_text"];
      } else {
        auto r = cli.Post("/v1/chat/completions", chat_request(bytes).dump(), "application/json");
        if (!r) return;
        status[static_cast<std::size_t>(i)] = r->status;
        if (r->status == 200) got[static_cast<std::size_t>(i)] = json::parse(r->body)["choices"][0]["message"]["content"];
      }
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 16; ++i) {
    INFO("client " << i);
    CHECK(status[static_cast<std::size_t>(i)] == 200);
    CHECK(got[static_cast<std::size_t>(i)] == want.at(images[static_cast<std::size_t>(i) % images.size()]));
  }
  auto cli = server.client();
  auto m = cli.Get("/metrics");
  REQUIRE(m);
  CHECK(metric(m->body, "xcaption_images_total") == 16);
  const double batches = metric(m->body, "xcaption_batches_total");
  CHECK(batches >= 1);
  CHECK(batches <= 16);
}

TEST_CASE("serve: a full queue answers 429 and the server keeps serving", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1", "--max-queue", "1", "--max-batch", "1"});
  const auto images = sample_images();
  const std::string flags = "--beams 4 --max-new-tokens 20 --min-new-tokens 20";
  const auto want = cli_captions(kShapes, images, flags);
  constexpr int kClients = 24;
  std::vector<int> status(kClients, 0);
  std::vector<std::string> body(kClients);
  std::vector<std::thread> clients;
  std::atomic<int> ready{0};
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      auto cli = server.client();
      const std::string& image = images[static_cast<std::size_t>(i) % images.size()];
      const std::string bytes = read_file(image);
      ++ready;
      while (ready < kClients) std::this_thread::yield();
      auto r = cli.Post("/caption?beams=4&max_new_tokens=20&min_new_tokens=20", bytes, "image/png");
      if (!r) {
        body[static_cast<std::size_t>(i)] = "no answer: " + httplib::to_string(r.error());
        return;
      }
      status[static_cast<std::size_t>(i)] = r->status;
      body[static_cast<std::size_t>(i)] = r->body;
    });
  for (auto& t : clients) t.join();
  int refused = 0, served = 0;
  for (int i = 0; i < kClients; ++i) {
    const auto k = static_cast<std::size_t>(i);
    INFO("client " << i << ": " << body[k]);
    if (status[k] == 429) {
      ++refused;
      const json e = json::parse(body[k])["error"];
      CHECK(e["code"] == "queue_full");
      CHECK(e["type"] == "rate_limit_error");
    } else {
      CHECK(status[k] == 200);
      CHECK(json::parse(body[k])[0]["generated_text"] == want.at(images[k % images.size()]));
      ++served;
    }
  }
  CHECK(refused >= 1);
  CHECK(served >= 1);
  auto cli = server.client();
  auto after = cli.Post("/caption?beams=4&max_new_tokens=20&min_new_tokens=20", read_file(images[0]), "image/png");
  REQUIRE(after);
  CHECK(after->status == 200);
  CHECK(json::parse(after->body)[0]["generated_text"] == want.at(images[0]));
  auto m = cli.Get("/metrics");
  REQUIRE(m);
  CHECK(metric(m->body, R"(xcaption_requests_total{route="/caption",status="429"})") == refused);
}

TEST_CASE("serve: hostile requests get their status and the server keeps serving", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1", "--api-key", "sesame", "--max-body-mb", "1",
                        "--max-pixels", "1000000", "--read-timeout", "1"});
  const std::string image = sample_images()[3];
  const std::string bytes = read_file(image);
  const std::string want = cli_captions(kShapes, {image}).at(image);
  auto cli = server.client();
  const httplib::Headers key = {{"Authorization", "Bearer sesame"}};
  auto expect = [&](const httplib::Result& r, int status, const std::string& code) {
    REQUIRE(r);
    INFO(r->body);
    CHECK(r->status == status);
    CHECK(error_of(r)["code"] == code);
  };

  // API key: missing or wrong -> 401; /health needs none.
  expect(cli.Post("/caption", bytes, "image/png"), 401, "missing_api_key");
  expect(cli.Post("/caption", {{"Authorization", "Bearer open"}}, bytes, "image/png"), 401, "invalid_api_key");
  expect(cli.Get("/v1/models", {{"Authorization", "Bearer nope"}}), 401, "invalid_api_key");
  auto health = cli.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  // Bodies: the wrong type, garbage, a bomb's header, too large, cut short.
  expect(cli.Post("/caption", key, "hello", "text/plain"), 415, "unsupported_media_type");
  expect(cli.Post("/caption", key, std::string(5000, 'x'), "image/png"), 400, "invalid_image");
  expect(cli.Post("/caption", key, bytes.substr(0, bytes.size() / 2), "image/png"), 400, "invalid_image");
  expect(cli.Post("/caption", key, bomb_png(100000, 100000), "image/png"), 413, "image_too_large");
  expect(cli.Post("/caption", key, std::string(1200000, 'x'), "image/png"), 413, "body_too_large");
  expect(cli.Post("/caption", key, json{{"inputs", "@@@"}}.dump(), "application/json"), 400, "invalid_base64");
  expect(cli.Post("/caption", key, "{\"inputs\": ", "application/json"), 400, "invalid_json");
  expect(cli.Post("/v1/chat/completions", key, "[[[[", "application/json"), 400, "invalid_json");
  expect(cli.Post("/caption?beams=banana", key, bytes, "image/png"), 400, "invalid_parameter");
  expect(cli.Post("/caption?colour=red", key, bytes, "image/png"), 400, "unknown_parameter");
  expect(cli.Get("/caption", key), 405, "method_not_allowed");
  expect(cli.Get("/nothing-here", key), 404, "not_found");
  {
    // A body cut short: 5000 bytes announced, 100 sent, then nothing: after --read-timeout the
    // server gives up on it. (httplib takes a half-closed connection for a closed one, so the
    // client keeps its end open.)
    RawSocket s(server.port);
    s.send("POST /caption HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nContent-Type: image/png\r\n"
           "Content-Length: 5000\r\n\r\n" + bytes.substr(0, 100));
    const std::string answer = s.receive();
    CHECK(RawSocket::status(answer) == 400);
    CHECK(json::parse(RawSocket::body(answer))["error"]["code"] == "invalid_body");
  }
  {
    // A declared length over the cap is refused without reading it.
    RawSocket s(server.port);
    s.send("POST /caption HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nContent-Type: image/png\r\n"
           "Content-Length: 900000000\r\n\r\n");
    CHECK(RawSocket::status(s.receive()) == 413);
  }
  {
    // A chunked body has no declared length: it is cut off at the cap as it arrives.
    RawSocket s(server.port);
    std::string request = "POST /caption HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nContent-Type: image/png\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) request += "10000\r\n" + std::string(0x10000, 'z') + "\r\n";
    request += "0\r\n\r\n";
    s.send(request);
    const std::string answer = s.receive();
    CHECK(RawSocket::status(answer) == 413);
  }
  {
    // A slow client: half a request line, then nothing. Others are served meanwhile, and the
    // server drops it after --read-timeout.
    RawSocket slow(server.port);
    slow.send("POST /caption HTTP/1.1\r\nHost: x\r\nContent-Le");
    const auto t0 = std::chrono::steady_clock::now();
    auto r = cli.Post("/caption", key, bytes, "image/png");
    REQUIRE(r);
    CHECK(r->status == 200);
    slow.receive(10, /*one_response=*/false);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(slow.closed);
    CHECK(waited < 6.0);
  }
  {
    // A client that asks for a stream and goes away before reading it.
    RawSocket gone(server.port);
    const std::string body = chat_request(bytes, "", {{"stream", true}}).dump();
    gone.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n"
              "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }
  // Still serving, and still right.
  auto ok = cli.Post("/caption", key, bytes, "image/png");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(json::parse(ok->body)[0]["generated_text"] == want);
  auto chat = cli.Post("/v1/chat/completions", key, chat_request(bytes).dump(), "application/json");
  REQUIRE(chat);
  CHECK(chat->status == 200);
  CHECK(json::parse(chat->body)["choices"][0]["message"]["content"] == want);
  CHECK(server.stop() == 0);
}

TEST_CASE("serve: --timeout answers 504", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1", "--timeout", "0.000001"});
  auto cli = server.client();
  auto r = cli.Post("/caption", read_file(sample_images()[0]), "image/png");
  REQUIRE(r);
  CHECK(r->status == 504);
  CHECK(error_of(r)["code"] == "timeout");
  auto s = cli.Post("/v1/chat/completions", chat_request(read_file(sample_images()[0]), "", {{"stream", true}}).dump(),
                    "application/json");
  REQUIRE(s);
  const auto events = sse_events(s->body);
  REQUIRE(events.size() >= 2);
  CHECK(events.back() == "[DONE]");
  CHECK(json::parse(events[events.size() - 2])["error"]["code"] == "timeout");
}

TEST_CASE("serve: SIGTERM refuses new requests, finishes the one in flight, exits 0", "[server]") {
  ServerProcess server({"--model", kShapes, "--threads", "1"});
  const std::string image = sample_images()[4];
  const std::string bytes = read_file(image);
  const std::string want = cli_captions(kShapes, {image}).at(image);
  // A request in flight: its headers and half its body are in, the rest comes after the signal.
  RawSocket s(server.port);
  s.send("POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: " +
         std::to_string(bytes.size()) + "\r\n\r\n" + bytes.substr(0, bytes.size() / 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(server.pid(), SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    auto cli = server.client();
    auto refused = cli.Get("/health");
    REQUIRE(refused);
    CHECK(refused->status == 503);
    CHECK(error_of(refused)["code"] == "shutting_down");
  }
  s.send(bytes.substr(bytes.size() / 2));
  const std::string answer = s.receive();
  CHECK(RawSocket::status(answer) == 200);
  CHECK(json::parse(RawSocket::body(answer))[0]["generated_text"] == want);
  CHECK(server.wait_exit() == 0);
}

TEST_CASE("serve: option mistakes are usage errors before anything listens", "[server]") {
  CHECK(run_cli("serve --port 70000").exit_code == 2);
  CHECK(run_cli("serve --chat-text shout").exit_code == 2);
  CHECK(run_cli("serve --max-body-mb 0").exit_code == 2);
  const auto r = run_cli("serve --model '" + (kData / "no-such-model").string() + "' --port 0");
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("no-such-model") != std::string::npos);
  {
    ServerProcess first({"--model", kShapes, "--threads", "1"});
    const auto taken = run_cli("serve --model '" + kShapes + "' --port " + std::to_string(first.port));
    CHECK(taken.exit_code == 5);
    CHECK(taken.err.find("cannot listen on 127.0.0.1:" + std::to_string(first.port)) != std::string::npos);
  }
  const auto help = run_cli("serve --help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("/v1/chat/completions") != std::string::npos);
}

TEST_CASE("serve: a task model's task and text per request, as caption --task and attend --task give them", "[server]") {
  const std::string model = (kData / "tiny-florence2-remote").string();
  const std::string image = (kData / "golden_images" / "img_45x30.png").string();
  const std::string bytes = read_file(image);
  ServerProcess server({"--model", model, "--threads", "1"});
  auto cli = server.client();
  const CliResult od = run_cli("caption --threads 1 --json --task '<OD>' --max-new-tokens 16 --model '" + model + "' '" + image + "'");
  const CliResult cap = run_cli("caption --threads 1 --json --max-new-tokens 16 --model '" + model + "' '" + image + "'");
  REQUIRE(od.exit_code == 0);
  REQUIRE(cap.exit_code == 0);
  const json want_od = json::parse(od.out), want_cap = json::parse(cap.out);
  REQUIRE(want_od["token_ids"] != want_cap["token_ids"]);

  auto details = cli.Post("/caption?details=true",
                          httplib::MultipartFormDataItems{{"file", bytes, "img.png", "image/png"},
                                                          {"task", "<OD>", "", ""},
                                                          {"max_new_tokens", "16", "", ""}});
  REQUIRE(details);
  INFO(details->body.substr(0, 400));
  REQUIRE(details->status == 200);
  const json got = json::parse(details->body);
  CHECK(got["task"] == "<OD>");
  CHECK(got["token_ids"] == want_od["token_ids"]);
  CHECK(got["result"] == want_od["result"]);
  // Without a task: the model's default task, as the CLI's default.
  auto plain = cli.Post("/caption?details=true", json{{"inputs", xcaption::server::base64_encode(bytes)},
                                                      {"parameters", {{"max_new_tokens", 16}}}}.dump(),
                        "application/json");
  REQUIRE(plain);
  REQUIRE(plain->status == 200);
  CHECK(json::parse(plain->body)["token_ids"] == want_cap["token_ids"]);
  CHECK(json::parse(plain->body)["task"] == "<CAPTION>");

  const CliResult at = run_cli("attend --threads 1 --json --task '<OD>' --max-new-tokens 16 --model '" + model + "' '" + image + "'");
  REQUIRE(at.exit_code == 0);
  const json want_at = json::parse(at.out);
  auto attend = cli.Post("/attend", httplib::MultipartFormDataItems{{"file", bytes, "img.png", "image/png"},
                                                                    {"task", "<OD>", "", ""},
                                                                    {"max_new_tokens", "16", "", ""}});
  REQUIRE(attend);
  REQUIRE(attend->status == 200);
  const json ga = json::parse(attend->body);
  CHECK(ga["task"] == "<OD>");
  CHECK(ga["result"] == want_at["result"]);
  REQUIRE(ga["tokens"].size() == want_at["tokens"].size());
  for (std::size_t t = 0; t < ga["tokens"].size(); ++t) CHECK(ga["tokens"][t]["id"] == want_at["tokens"][t]["id"]);

  // An unknown task is the client's error, naming the task.
  auto bad = cli.Post("/caption", httplib::MultipartFormDataItems{{"file", bytes, "img.png", "image/png"},
                                                                  {"task", "<NOPE>", "", ""}});
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(bad->body.find("<NOPE>") != std::string::npos);
}
