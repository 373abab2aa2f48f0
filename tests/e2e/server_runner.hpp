// Starts `xcaption serve --port 0` for a test, reads the URL it prints, and stops it; plus raw
// socket helpers for requests no well-behaved client sends.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "tests/e2e/cli_runner.hpp"

namespace xcaption::test {

class ServerProcess {
 public:
  /// Starts the server with `args` after `serve --port 0`; fails the test when it exits or does
  /// not print its URL within 60 s.
  explicit ServerProcess(const std::vector<std::string>& args) : dir_(make_temp_dir("serve")) {
    std::vector<std::string> all = {"serve", "--port", "0"};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = spawn_cli(all, dir_ / "stderr");
    if (pid_ <= 0) throw std::runtime_error("cannot start xcaption serve");
    const std::regex ready(R"(xcaption: serving http://([0-9.]+):([0-9]+))");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until) {
      std::smatch m;
      const std::string err = stderr_text();
      if (std::regex_search(err, m, ready)) {
        host = m[1];
        port = std::stoi(m[2]);
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("xcaption serve exited before it was ready:\n" + err);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("xcaption serve printed no URL within 60 s:\n" + stderr_text());
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  std::string stderr_text() const { return read_file(dir_ / "stderr"); }

  httplib::Client client(int read_timeout_s = 60) const {
    httplib::Client c(host, port);
    c.set_read_timeout(read_timeout_s, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }

  /// Sends `sig` and waits (at most `limit_s`) for the exit; returns the exit code, -1 when it
  /// was killed by a signal, -2 when it did not exit in time (it is then killed).
  int stop(int sig = SIGTERM, int limit_s = 30) {
    ::kill(pid_, sig);
    return wait_exit(limit_s);
  }
  int wait_exit(int limit_s = 30) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(limit_s);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -2;
  }
  pid_t pid() const { return pid_; }

  std::string host;
  int port = 0;

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

/// A TCP connection to 127.0.0.1:port for hand-written requests.
class RawSocket {
 public:
  explicit RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
    timeval tv{30, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawSocket() { ::close(fd_); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  /// Reads until the peer closes, `limit_s` passes, or (when `one_response`) a whole response with
  /// a Content-Length has arrived.
  std::string receive(int limit_s = 30, bool one_response = true) {
    std::string out;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(limit_s);
    char buf[65536];
    while (std::chrono::steady_clock::now() < until) {
      timeval tv{0, 200000};
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        closed = true;
        break;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        closed = true;  // reset
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (one_response && complete(out)) break;
    }
    return out;
  }
  bool closed = false;

  /// The status code of the first response in `text`, or 0.
  static int status(const std::string& text) {
    std::smatch m;
    static const std::regex line(R"(^HTTP/1\.[01] ([0-9]{3}))");
    return std::regex_search(text, m, line) ? std::stoi(m[1]) : 0;
  }
  /// The body of the first response (Content-Length framing).
  static std::string body(const std::string& text) {
    const auto end = text.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : text.substr(end + 4);
  }

 private:
  static bool complete(const std::string& text) {
    const auto end = text.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    std::smatch m;
    static const std::regex length(R"(\r\n[Cc]ontent-[Ll]ength: *([0-9]+))");
    const std::string head = text.substr(0, end);
    if (!std::regex_search(head, m, length)) return false;
    return text.size() >= end + 4 + std::stoul(m[1]);
  }
  int fd_ = -1;
};

/// `caption --model MODEL [flags] IMAGES...` -> image path -> caption.
inline std::map<std::string, std::string> cli_captions(const std::string& model, const std::vector<std::string>& images,
                                                       const std::string& flags = "") {
  std::string args = "caption --threads 1 --model '" + model + "' " + flags;
  for (const auto& i : images) args += " '" + i + "'";
  // With two or more images every line is "PATH: caption"; a second copy of the first image
  // makes that so for one image too.
  if (images.size() == 1) args += " '" + images.front() + "'";
  const CliResult r = run_cli(args);
  if (r.exit_code != 0) throw std::runtime_error("caption failed: " + r.err);
  std::map<std::string, std::string> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    for (const auto& i : images)
      if (line.rfind(i + ": ", 0) == 0) out[i] = line.substr(i.size() + 2);
  }
  return out;
}

}  // namespace xcaption::test
