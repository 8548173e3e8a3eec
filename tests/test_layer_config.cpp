// Tests for LayerConfig and ConfigValue (layers/layer_config.hpp): typed getters, nesting, the
// errors for missing and mistyped values, and the all-double interface of format 1.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "facet/layers/layer_config.hpp"

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
