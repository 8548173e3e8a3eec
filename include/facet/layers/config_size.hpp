// facet/layers/config_size.hpp — config_size(): a size read from a LayerConfig (a kernel, a
// stride, a channel count) with its range checked, for the layers' from_config().
// Read layers/layer_config.hpp first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "facet/core/error.hpp"
#include "facet/layers/layer_config.hpp"

namespace facet::detail {

/// Value `key` of `c` as a whole number in [min, 2^32] (`fallback` when absent and given); an
/// Error names the layer type and the key otherwise.
inline std::size_t config_size(const LayerConfig& c, const std::string& key, std::size_t min,
                               std::optional<std::size_t> fallback = std::nullopt) {
    if (fallback && !c.has(key)) return *fallback;
    const std::int64_t v = c.integer(key);
    check(v >= static_cast<std::int64_t>(min) && v <= (std::int64_t{1} << 32), "LayerConfig ",
          c.type, ": '", key, "' must be a whole number in [", min, ", 2^32], got ", v);
    return static_cast<std::size_t>(v);
}

}  // namespace facet::detail
