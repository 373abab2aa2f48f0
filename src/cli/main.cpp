// xcaption command-line entry point (subcommands are added as the engine grows).
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::printf("xcaption %s\n", XCAPTION_VERSION);
    return 0;
  }
  std::fprintf(stderr, "usage: xcaption --version\n");
  return 2;
}
