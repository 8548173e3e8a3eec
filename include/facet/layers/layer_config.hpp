// facet/layers/layer_config.hpp — LayerConfig, a layer's architecture as data: its type name and
// typed, possibly nested hyper-parameters (ConfigValue), enough to rebuild the layer from a model
// file. Included by layers/layer.hpp; read next: layers/registry.hpp, which turns a config back
// into a layer.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "facet/core/error.hpp"

namespace facet {

struct LayerConfig;

/// One hyper-parameter value: an integer, a real, a flag, a text, a list of values, or a list of
/// child layer configs (the layers of a graph or a composite layer). Implicitly constructible
/// from each, so `{{"in_features", double(n)}, {"bias", true}}` builds a config's values.
class ConfigValue {
  public:
    using List = std::vector<ConfigValue>;
    using Children = std::vector<LayerConfig>;
    /// The alternatives, in the order of the variant (and of the model file's type tags).
    enum class Kind : std::uint8_t {
        Integer = 0,
        Real = 1,
        Flag = 2,
        Text = 3,
        List = 4,
        Children = 5
    };

    /// The integer 0.
    ConfigValue() = default;
    ConfigValue(double v) : value_(v) {}
    ConfigValue(bool v) : value_(v) {}
    /// Any integer type but bool; an unsigned value above INT64_MAX is an Error.
    template <std::integral I>
    requires(!std::same_as<I, bool>) ConfigValue(I v) : value_(to_int64(v)) {}
    ConfigValue(const char* v) : value_(std::string(v)) {}
    ConfigValue(std::string v) : value_(std::move(v)) {}
    ConfigValue(List v) : value_(Shared<List>{std::make_shared<const List>(std::move(v))}) {}
    ConfigValue(Children v);

    Kind kind() const { return static_cast<Kind>(value_.index()); }
    bool is(Kind k) const { return kind() == k; }

    /// The value as an integer: an integer, or a whole-valued real in int64's range (model files
    /// of format 1 stored every value as a double). Otherwise an Error starting with `what`.
    std::int64_t as_integer(std::string_view what = "config value") const {
        if (const auto* i = std::get_if<std::int64_t>(&value_)) return *i;
        if (const auto* d = std::get_if<double>(&value_)) {
            // 2^63 is exactly representable; whole doubles below it convert exactly.
            if (std::isfinite(*d) && *d == std::floor(*d) && *d >= -9223372036854775808.0 &&
                *d < 9223372036854775808.0)
                return static_cast<std::int64_t>(*d);
        }
        throw mismatch(what, "an integer");
    }
    /// The value as a real: a real or an integer. Otherwise an Error starting with `what`.
    double as_real(std::string_view what = "config value") const {
        if (const auto* d = std::get_if<double>(&value_)) return *d;
        if (const auto* i = std::get_if<std::int64_t>(&value_)) return static_cast<double>(*i);
        throw mismatch(what, "a real number");
    }
    /// The value as a flag: a flag, or the number 0 or 1 (format 1 stored flags as 0.0 / 1.0).
    bool as_flag(std::string_view what = "config value") const {
        if (const auto* b = std::get_if<bool>(&value_)) return *b;
        if (const auto* i = std::get_if<std::int64_t>(&value_); i && (*i == 0 || *i == 1))
            return *i == 1;
        if (const auto* d = std::get_if<double>(&value_); d && (*d == 0 || *d == 1)) return *d == 1;
        throw mismatch(what, "a flag (true / false, or 0 / 1)");
    }
    const std::string& as_text(std::string_view what = "config value") const {
        if (const auto* s = std::get_if<std::string>(&value_)) return *s;
        throw mismatch(what, "a text");
    }
    const List& as_list(std::string_view what = "config value") const {
        if (const auto* l = std::get_if<Shared<List>>(&value_)) return *l->value;
        throw mismatch(what, "a list");
    }
    const Children& as_children(std::string_view what = "config value") const;

    /// A short description for error messages, e.g. "real 2.5", "text \"same\"", "list of 3".
    std::string describe() const;

    bool operator==(const ConfigValue& other) const;

  private:
    template <std::integral I>
    static std::int64_t to_int64(I v) {
        if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t))
            check(v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
                  "ConfigValue: integer ", v, " does not fit in 64-bit signed");
        return static_cast<std::int64_t>(v);
    }
    Error mismatch(std::string_view what, const char* expected) const {
        return Error(detail::concat(what, " must be ", expected, ", got ", describe()));
    }

    /// Lists and child configs are held by pointer: a variant holding a vector of a type not yet
    /// complete (ConfigValue itself, LayerConfig) is refused by some compilers (clang). Values
    /// never change once built, so copies may share them.
    template <typename V>
    struct Shared {
        std::shared_ptr<const V> value;
        bool operator==(const Shared& other) const { return *value == *other.value; }
    };

    std::variant<std::int64_t, double, bool, std::string, Shared<List>, Shared<Children>> value_{
        std::int64_t{0}};
};

/// The name of a value kind ("integer", "real", "flag", "text", "list", "children").
inline const char* kind_name(ConfigValue::Kind k) {
    switch (k) {
        case ConfigValue::Kind::Integer:
            return "integer";
        case ConfigValue::Kind::Real:
            return "real";
        case ConfigValue::Kind::Flag:
            return "flag";
        case ConfigValue::Kind::Text:
            return "text";
        case ConfigValue::Kind::List:
            return "list";
        case ConfigValue::Kind::Children:
            return "children";
    }
    return "unknown";
}

/// A layer's architecture: its type name and named hyper-parameters, enough to rebuild it.
/// Values keep their insertion order (a model file stores them in that order). Every getter
/// throws a facet::Error naming the layer type and the key when the value is missing (and no
/// fallback is given) or of the wrong kind.
struct LayerConfig {
    std::string type;
    std::vector<std::pair<std::string, ConfigValue>> values;

    /// The value under `key`, or nullptr.
    const ConfigValue* find(const std::string& key) const {
        for (const auto& [k, v] : values)
            if (k == key) return &v;
        return nullptr;
    }
    bool has(const std::string& key) const { return find(key) != nullptr; }
    /// The value under `key`, or an Error naming the layer type and the missing key.
    const ConfigValue& at(const std::string& key) const {
        if (const ConfigValue* v = find(key)) return *v;
        throw Error(detail::concat("LayerConfig ", type, ": missing value '", key, "'"));
    }
    /// Sets `key` to `value`, replacing an existing value in place or appending a new one.
    LayerConfig& set(const std::string& key, ConfigValue value) {
        for (auto& [k, v] : values)
            if (k == key) {
                v = std::move(value);
                return *this;
            }
        values.emplace_back(key, std::move(value));
        return *this;
    }

    /// `key` as an integer (a whole-valued real is accepted, as in files of format 1).
    std::int64_t integer(const std::string& key) const { return at(key).as_integer(where(key)); }
    std::int64_t integer(const std::string& key, std::int64_t fallback) const {
        const ConfigValue* v = find(key);
        return v ? v->as_integer(where(key)) : fallback;
    }
    /// `key` as a real (an integer is accepted).
    double real(const std::string& key) const { return at(key).as_real(where(key)); }
    double real(const std::string& key, double fallback) const {
        const ConfigValue* v = find(key);
        return v ? v->as_real(where(key)) : fallback;
    }
    /// `key` as a flag (the numbers 0 and 1 are accepted).
    bool flag(const std::string& key) const { return at(key).as_flag(where(key)); }
    bool flag(const std::string& key, bool fallback) const {
        const ConfigValue* v = find(key);
        return v ? v->as_flag(where(key)) : fallback;
    }
    const std::string& text(const std::string& key) const { return at(key).as_text(where(key)); }
    std::string text(const std::string& key, const std::string& fallback) const {
        const ConfigValue* v = find(key);
        return v ? v->as_text(where(key)) : fallback;
    }
    const ConfigValue::List& list(const std::string& key) const {
        return at(key).as_list(where(key));
    }
    const ConfigValue::Children& children(const std::string& key) const {
        return at(key).as_children(where(key));
    }

    /// `key` as a number (integer, real or flag as 0 / 1): the interface of format 1's
    /// all-double configs, kept for existing code.
    double get(const std::string& key) const { return number(at(key), key); }
    double get(const std::string& key, double fallback) const {
        const ConfigValue* v = find(key);
        return v ? number(*v, key) : fallback;
    }

    bool operator==(const LayerConfig& other) const = default;

  private:
    std::string where(const std::string& key) const {
        return detail::concat("LayerConfig ", type, ": '", key, "'");
    }
    double number(const ConfigValue& v, const std::string& key) const {
        if (v.is(ConfigValue::Kind::Flag)) return v.as_flag() ? 1.0 : 0.0;
        return v.as_real(where(key));
    }
};

// The members that need LayerConfig complete.
inline ConfigValue::ConfigValue(Children v)
    : value_(Shared<Children>{std::make_shared<const Children>(std::move(v))}) {}

inline const ConfigValue::Children& ConfigValue::as_children(std::string_view what) const {
    if (const auto* c = std::get_if<Shared<Children>>(&value_)) return *c->value;
    throw mismatch(what, "a list of layer configs");
}

inline bool ConfigValue::operator==(const ConfigValue& other) const {
    return value_ == other.value_;
}

inline std::string ConfigValue::describe() const {
    switch (kind()) {
        case Kind::Integer:
            return detail::concat("integer ", std::get<std::int64_t>(value_));
        case Kind::Real:
            return detail::concat("real ", std::get<double>(value_));
        case Kind::Flag:
            return std::get<bool>(value_) ? "flag true" : "flag false";
        case Kind::Text:
            return detail::concat("text \"", std::get<std::string>(value_), "\"");
        case Kind::List:
            return detail::concat("list of ", std::get<Shared<List>>(value_).value->size());
        case Kind::Children:
            return detail::concat("list of ", std::get<Shared<Children>>(value_).value->size(),
                                  " layer configs");
    }
    return "unknown";
}

}  // namespace facet
