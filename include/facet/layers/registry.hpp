// facet/layers/registry.hpp — the layer registry: a table from type name to the functions that
// rebuild a layer from its LayerConfig, which layers join themselves with one line in their own
// header,
//
//     inline const bool conv2d_registered = register_layer<Conv2d>("Conv2d");
//
// and make_layer(), which looks a config's type up in it (the way a model file is turned back
// into a network). A layer is known once its header is included; facet/facet.hpp includes all of
// facet's. Also the checked config readers that layers' from_config() use.
// Read next: model/sequential.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// What the registry keeps for a layer type: its factories for both scalar types, and a lower
/// bound on the float values a model file stores for a layer of a given config (its weights),
/// which the loader checks against the bytes left before it builds (and allocates) the layer.
struct LayerRegistration {
    std::unique_ptr<Layer<float>> (*make_float)(const LayerConfig&) = nullptr;
    std::unique_ptr<Layer<double>> (*make_double)(const LayerConfig&) = nullptr;
    double (*stored_values_lower_bound)(const LayerConfig&) = nullptr;

    bool operator==(const LayerRegistration&) const = default;
};

namespace detail {
/// The table, created on first use (so registering from any static initialiser is safe) and
/// guarded by a mutex (so registering at run time, e.g. from a plug-in, is too).
struct LayerTable {
    std::mutex mutex;
    std::map<std::string, LayerRegistration> entries;
};
inline LayerTable& layer_table() {
    static LayerTable table;
    return table;
}
}  // namespace detail

/// Registers `registration` under `name`. Registering the same functions again is harmless; a
/// different registration for a taken name is an Error (two layers cannot share a type name).
inline bool register_layer(const std::string& name, const LayerRegistration& registration) {
    check(!name.empty(), "register_layer: empty type name");
    check(registration.make_float != nullptr && registration.make_double != nullptr,
          "register_layer: '", name, "' needs a factory for float and for double");
    detail::LayerTable& table = detail::layer_table();
    std::lock_guard lock(table.mutex);
    const auto [it, inserted] = table.entries.emplace(name, registration);
    check(inserted || it->second == registration, "register_layer: the type name '", name,
          "' is already registered for another layer");
    return true;
}

/// Registers the layer template L (L<float> and L<double>) under `name`: make_layer() then builds
/// it with L<T>::from_config, and the model loader bounds its stored values with
/// L<T>::stored_values_lower_bound (Layer's default: 0; a layer with weights gives their count).
/// Call it once per name, from the layer's own header:
///
///     inline const bool scale_registered = facet::register_layer<Scale>("Scale");
///
/// A subclass inherits both static functions from its parent: one registered under a name of its
/// own must declare its own from_config, or make_layer would build the parent.
template <template <typename> class L>
bool register_layer(const std::string& name) {
    LayerRegistration r;
    r.make_float = &L<float>::from_config;
    r.make_double = &L<double>::from_config;
    r.stored_values_lower_bound = &L<float>::stored_values_lower_bound;
    return register_layer(name, r);
}

/// The registered type names, sorted.
inline std::vector<std::string> registered_layer_types() {
    detail::LayerTable& table = detail::layer_table();
    std::lock_guard lock(table.mutex);
    std::vector<std::string> names;
    for (const auto& entry : table.entries) names.push_back(entry.first);
    return names;
}

/// The registration of `type`, or an Error listing the registered names.
inline LayerRegistration layer_registration(const std::string& type) {
    detail::LayerTable& table = detail::layer_table();
    std::unique_lock lock(table.mutex);
    if (const auto it = table.entries.find(type); it != table.entries.end()) return it->second;
    lock.unlock();
    std::string known;
    for (const std::string& name : registered_layer_types())
        known += (known.empty() ? "" : ", ") + name;
    throw Error(detail::concat("make_layer: unknown layer type '", type,
                               "' (registered: ", known.empty() ? "none" : known,
                               "; a layer registers itself when its header is included)"));
}

/// A new layer of config.type with config's hyper-parameters (parameters freshly initialised;
/// load trained values into parameters() afterwards). Throws facet::Error for an unknown type,
/// a missing required value or a value out of range.
template <typename T>
std::unique_ptr<Layer<T>> make_layer(const LayerConfig& config) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "make_layer: layers are float or double");
    const LayerRegistration r = layer_registration(config.type);
    std::unique_ptr<Layer<T>> layer;
    if constexpr (std::is_same_v<T, float>)
        layer = r.make_float(config);
    else
        layer = r.make_double(config);
    check(layer != nullptr, "make_layer: the factory of '", config.type, "' returned no layer");
    return layer;
}

/// The registered lower bound on the float values a model file holds for a layer of this config
/// (0 for an unknown type, which make_layer refuses anyway).
inline double stored_values_lower_bound(const LayerConfig& config) {
    double (*bound)(const LayerConfig&) = nullptr;
    {
        detail::LayerTable& table = detail::layer_table();
        std::lock_guard lock(table.mutex);
        const auto it = table.entries.find(config.type);
        if (it != table.entries.end()) bound = it->second.stored_values_lower_bound;
    }
    // Called without the lock: a graph's bound asks the registry for its nodes' bounds.
    return bound ? bound(config) : 0;
}

namespace detail {
/// config value `key` as a whole number in [min, max]; an Error names the layer and the key.
inline std::size_t config_count(const LayerConfig& c, const std::string& key, std::size_t min,
                                double max = double(std::size_t{1} << 32)) {
    const ConfigValue& value = c.at(key);
    const double v = value.is(ConfigValue::Kind::Integer) || value.is(ConfigValue::Kind::Real)
                         ? value.as_real()
                         : std::nan("");
    check(std::isfinite(v) && v == std::floor(v) && v >= double(min) && v <= max, "LayerConfig ",
          c.type, ": '", key, "' must be a whole number in [", min, ", ", max, "], got ",
          value.describe());
    return static_cast<std::size_t>(v);
}
/// config value `key` as a whole number in [min, max], or `fallback` when absent.
inline std::size_t config_count(const LayerConfig& c, const std::string& key, std::size_t min,
                                double max, std::size_t fallback) {
    return c.has(key) ? config_count(c, key, min, max) : fallback;
}
/// config value `key` (or `fallback` when absent) as a flag: true / false, or 0 / 1.
inline bool config_flag(const LayerConfig& c, const std::string& key, bool fallback) {
    const ConfigValue* v = c.find(key);
    if (v == nullptr) return fallback;
    const bool ok = v->is(ConfigValue::Kind::Flag) ||
                    ((v->is(ConfigValue::Kind::Integer) || v->is(ConfigValue::Kind::Real)) &&
                     (v->as_real() == 0 || v->as_real() == 1));
    check(ok, "LayerConfig ", c.type, ": '", key, "' must be 0 or 1 (a flag), got ", v->describe());
    return v->as_flag();
}
/// config value `key` (or `fallback`), which must be a finite number.
inline double config_real(const LayerConfig& c, const std::string& key, double fallback) {
    const double v = c.real(key, fallback);
    check(std::isfinite(v), "LayerConfig ", c.type, ": '", key, "' must be finite, got ", v);
    return v;
}
/// A config value as a positive number for a stored-values bound: 0 when absent, not a number or
/// not positive (from_config refuses those anyway).
inline double config_positive(const LayerConfig& c, const std::string& key) {
    const ConfigValue* v = c.find(key);
    if (v == nullptr || !(v->is(ConfigValue::Kind::Integer) || v->is(ConfigValue::Kind::Real)))
        return 0;
    const double x = v->as_real();
    return std::isfinite(x) && x > 0 ? x : 0.0;
}
}  // namespace detail

}  // namespace facet
