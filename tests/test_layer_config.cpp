// Tests for LayerConfig and ConfigValue (layers/layer_config.hpp): typed getters, nesting, the
// errors for missing and mistyped values, and the all-double interface of format 1; and for the
// layer registry (layers/registry.hpp) with layers defined only here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/layers/layer_config.hpp"
#include "facet/layers/registry.hpp"

using namespace facet;

namespace {
// The message of the Error that `f` throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("ConfigValue keeps the kind it was built from") {
    CHECK(ConfigValue(3).kind() == ConfigValue::Kind::Integer);
    CHECK(ConfigValue(std::size_t{3}).kind() == ConfigValue::Kind::Integer);
    CHECK(ConfigValue(std::int64_t{-3}).as_integer() == -3);
    CHECK(ConfigValue(2.5).kind() == ConfigValue::Kind::Real);
    CHECK(ConfigValue(2.5f).kind() == ConfigValue::Kind::Real);
    CHECK(ConfigValue(true).kind() == ConfigValue::Kind::Flag);
    CHECK(ConfigValue("same").kind() == ConfigValue::Kind::Text);
    CHECK(ConfigValue(std::string("same")).as_text() == "same");
    CHECK(ConfigValue(ConfigValue::List{1, 2.5, "x"}).as_list().size() == 3);
    CHECK(ConfigValue().as_integer() == 0);
    CHECK_THROWS_AS(ConfigValue(std::uint64_t{1} << 63), Error);
    CHECK(std::string(kind_name(ConfigValue::Kind::Children)) == "children");
}

TEST_CASE("ConfigValue conversions: whole reals are integers, 0 / 1 are flags") {
    CHECK(ConfigValue(4.0).as_integer() == 4);
    CHECK(ConfigValue(-4.0).as_integer() == -4);
    CHECK_THROWS_AS(ConfigValue(4.5).as_integer(), Error);
    CHECK_THROWS_AS(ConfigValue(1e300).as_integer(), Error);
    CHECK_THROWS_AS(ConfigValue(9223372036854775808.0).as_integer(), Error);
    CHECK(ConfigValue(-9223372036854775808.0).as_integer() == INT64_MIN);
    CHECK(ConfigValue(7).as_real() == 7.0);
    CHECK(ConfigValue(1.0).as_flag());
    CHECK_FALSE(ConfigValue(0).as_flag());
    CHECK_THROWS_AS(ConfigValue(2).as_flag(), Error);
    CHECK_THROWS_AS(ConfigValue(0.5).as_flag(), Error);
    CHECK_THROWS_AS(ConfigValue(true).as_integer(), Error);
    CHECK_THROWS_AS(ConfigValue("1").as_real(), Error);
    CHECK_THROWS_AS(ConfigValue(1).as_text(), Error);
    CHECK_THROWS_AS(ConfigValue(1).as_list(), Error);
    CHECK_THROWS_AS(ConfigValue(1).as_children(), Error);
}

TEST_CASE("LayerConfig: typed getters, fallbacks and set()") {
    LayerConfig c{"Conv2d", {{"in_channels", 3}, {"eps", 1e-5}, {"bias", false}, {"mode", "same"}}};
    CHECK(c.integer("in_channels") == 3);
    CHECK(c.real("eps") == 1e-5);
    CHECK(c.real("in_channels") == 3.0);
    CHECK_FALSE(c.flag("bias"));
    CHECK(c.text("mode") == "same");
    CHECK(c.has("mode"));
    CHECK_FALSE(c.has("stride"));
    CHECK(c.integer("stride", 1) == 1);
    CHECK(c.real("momentum", 0.1) == 0.1);
    CHECK(c.flag("affine", true));
    CHECK(c.text("padding_mode", "zeros") == "zeros");
    // A fallback does not hide a value of the wrong kind.
    CHECK_THROWS_AS(c.integer("mode", 1), Error);

    c.set("in_channels", 4).set("stride", 2);
    CHECK(c.integer("in_channels") == 4);
    CHECK(c.values.size() == 5);
    CHECK(c.values.front().first == "in_channels");  // replaced in place, order kept
    CHECK(c.values.back().first == "stride");
}

TEST_CASE("LayerConfig errors name the layer type and the key") {
    const LayerConfig c{"Dense", {{"in_features", 2.5}, {"name", "fc"}}};
    const std::string missing = error_of([&] { (void)c.integer("out_features"); });
    CHECK(missing.find("Dense") != std::string::npos);
    CHECK(missing.find("'out_features'") != std::string::npos);
    CHECK(missing.find("missing") != std::string::npos);
    const std::string fractional = error_of([&] { (void)c.integer("in_features"); });
    CHECK(fractional.find("Dense") != std::string::npos);
    CHECK(fractional.find("'in_features'") != std::string::npos);
    CHECK(fractional.find("integer") != std::string::npos);
    CHECK(fractional.find("2.5") != std::string::npos);
    const std::string text = error_of([&] { (void)c.real("name"); });
    CHECK(text.find("'name'") != std::string::npos);
    CHECK(text.find("text \"fc\"") != std::string::npos);
    CHECK(error_of([&] { (void)c.list("name"); }).find("list") != std::string::npos);
    CHECK(error_of([&] { (void)c.children("name"); }).find("layer configs") != std::string::npos);
    CHECK(error_of([&] { (void)c.flag("in_features"); }).find("flag") != std::string::npos);
}

TEST_CASE("LayerConfig nests lists and child configs") {
    LayerConfig block{"Residual", {}};
    block.set("layers", ConfigValue::Children{
                            {"Conv2d", {{"in_channels", 8}, {"out_channels", 8}}},
                            {"ReLU", {}},
                        });
    block.set("shape", ConfigValue::List{1, 48, 48});
    block.set("nested", ConfigValue::List{ConfigValue::List{1, 2}, "x", true});
    const auto& children = block.children("layers");
    REQUIRE(children.size() == 2);
    CHECK(children[0].type == "Conv2d");
    CHECK(children[0].integer("out_channels") == 8);
    CHECK(children[1].values.empty());
    const auto& shape = block.list("shape");
    REQUIRE(shape.size() == 3);
    CHECK(shape[2].as_integer() == 48);
    CHECK(block.list("nested")[0].as_list()[1].as_integer() == 2);

    // Equality is deep.
    LayerConfig copy = block;
    CHECK(copy == block);
    auto layers = copy.children("layers");
    layers[0].set("out_channels", 9);
    copy.set("layers", layers);
    CHECK_FALSE(copy == block);
    CHECK(ConfigValue(1) != ConfigValue(1.0));  // kinds differ
}

TEST_CASE("LayerConfig keeps format 1's all-double interface") {
    // Configs written as {"key", double} pairs and read with get(), as before typed values.
    const LayerConfig c{"Dense",
                        {{"in_features", double(12)},
                         {"out_features", 7.0},
                         {"bias", true},
                         {"slope", 0.25},
                         {"n", 3}}};
    CHECK(c.get("in_features") == 12.0);
    CHECK(c.get("bias") == 1.0);
    CHECK(c.get("n") == 3.0);
    CHECK(c.get("slope") == 0.25);
    CHECK(c.get("absent", -1) == -1.0);
    CHECK_THROWS_AS(c.get("absent"), Error);
    CHECK(c.integer("out_features") == 7);  // a whole double reads as an integer
    const LayerConfig text{"X", {{"name", "a"}}};
    CHECK_THROWS_AS(text.get("name"), Error);
}

// ---- the registry (layers/registry.hpp) ----

namespace {
/// A layer defined only here: y = x, with `width` stored values; registers itself below.
template <typename T>
class Probe : public Layer<T> {
  public:
    explicit Probe(std::size_t width) : width_(width) {}
    std::string type() const override { return "TestProbe"; }
    Shape output_shape(const Shape& input) const override { return input; }
    void forward(const Tensor<T>& x, Tensor<T>& y) override { y = x; }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>& dx) override {
        dx = dy;
    }
    LayerConfig config() const override { return {"TestProbe", {{"width", width_}}}; }
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return std::make_unique<Probe<T>>(detail::config_count(c, "width", 1));
    }
    static double stored_values_lower_bound(const LayerConfig& c) {
        return 3 * detail::config_positive(c, "width");
    }
    std::size_t width() const { return width_; }

  private:
    std::size_t width_;
};
/// A layer that keeps Layer's default bound (0) and registers under a name of its own.
template <typename T>
class Quiet : public Probe<T> {
  public:
    Quiet() : Probe<T>(1) {}
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig&) {
        return std::make_unique<Quiet<T>>();
    }
    static double stored_values_lower_bound(const LayerConfig& c) {
        return Layer<T>::stored_values_lower_bound(c);
    }
};
inline const bool probe_registered = register_layer<Probe>("TestProbe");
inline const bool quiet_registered = register_layer<Quiet>("TestQuiet");
}  // namespace

TEST_CASE("a layer registers itself: make_layer builds it for float and double") {
    CHECK(probe_registered);
    const auto names = registered_layer_types();
    CHECK(std::find(names.begin(), names.end(), "TestProbe") != names.end());
    CHECK(std::is_sorted(names.begin(), names.end()));
    auto f = make_layer<float>({"TestProbe", {{"width", 4}}});
    auto d = make_layer<double>({"TestProbe", {{"width", 5.0}}});  // format 1 stored a double
    CHECK(f->type() == "TestProbe");
    CHECK(dynamic_cast<Probe<float>&>(*f).width() == 4);
    CHECK(dynamic_cast<Probe<double>&>(*d).width() == 5);
    CHECK(make_layer<float>({"TestQuiet", {}})->config().integer("width") == 1);
    // The values a file must hold for it, from the layer's own bound (0 for unknown types).
    CHECK(stored_values_lower_bound({"TestProbe", {{"width", 7}}}) == 21);
    CHECK(stored_values_lower_bound({"TestProbe", {{"width", -7}}}) == 0);
    CHECK(stored_values_lower_bound({"TestQuiet", {{"width", 7}}}) == 0);
    CHECK(stored_values_lower_bound({"NoSuchLayer", {{"width", 7}}}) == 0);
    // Its from_config's checks reach the caller.
    CHECK(error_of([] {
              make_layer<float>({"TestProbe", {{"width", 0}}});
          }).find("'width' must be a whole number") != std::string::npos);
}

TEST_CASE("the registry refuses unknown names and a second layer under a taken name") {
    const std::string unknown = error_of([] { make_layer<float>({"Conv3d", {}}); });
    CHECK(unknown.find("unknown layer type 'Conv3d'") != std::string::npos);
    CHECK(unknown.find("TestProbe") != std::string::npos);  // the registered names are listed
    CHECK(unknown.find("TestQuiet") != std::string::npos);
    // The same registration again is harmless; another layer under the name is an error.
    CHECK(register_layer<Probe>("TestProbe"));
    CHECK(error_of([] { register_layer<Quiet>("TestProbe"); }).find("already registered") !=
          std::string::npos);
    CHECK_THROWS_AS(register_layer("", LayerRegistration{}), Error);
    CHECK_THROWS_AS(register_layer("TestNull", LayerRegistration{}), Error);
}
