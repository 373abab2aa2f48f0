// Umbrella header of the xcaption library.
#pragma once

#include <xcaption/captioner.hpp>
#include <xcaption/convert.hpp>
#include <xcaption/errors.hpp>
#include <xcaption/image.hpp>
#include <xcaption/scenes.hpp>
#include <xcaption/video.hpp>
#include <xcaption/viz.hpp>

namespace xcaption {

/// The library version, e.g. "0.1.0".
inline const char* version() { return XCAPTION_VERSION; }

}  // namespace xcaption
