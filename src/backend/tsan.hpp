#pragma once

// XCAPTION_TSAN is defined when this translation unit is compiled with ThreadSanitizer, however
// the flag was passed (XCAPTION_SANITIZE=thread or plain -fsanitize=thread): GCC says so with
// __SANITIZE_THREAD__, clang with __has_feature(thread_sanitizer). Read by target_clones.hpp and
// tests/unit/test_perf_paths.cpp.
#if defined(__SANITIZE_THREAD__)
#define XCAPTION_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define XCAPTION_TSAN 1
#endif
#endif
