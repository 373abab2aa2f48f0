#pragma once

// XCAPTION_TARGET_CLONES("avx512f", ..., "default"): one copy of a function per instruction set,
// picked when the program is loaded (GCC and clang `target_clones`, through an ifunc resolver).
// ThreadSanitizer instruments that resolver, and the dynamic loader runs it before the TSan
// runtime is set up, which crashes at start-up; a TSan build therefore keeps the default copy.
#include "src/backend/tsan.hpp"

#ifdef XCAPTION_TSAN
#define XCAPTION_TARGET_CLONES(...)
#else
#define XCAPTION_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#endif
