// custom_layer_save_load.cpp — save and load a model that contains a layer of your own (quoted in
// docs/embedding.md): scale_layer.hpp registers Scale, so load() rebuilds it like any facet layer.
// Exits non-zero unless the loaded model predicts exactly what the saved one did.
#include <cstdio>
#include <facet/facet.hpp>

#include "scale_layer.hpp"

using namespace facet;
using facet_docs::Scale;

int main() {
    Sequential<float> model(Shape{6});
    model.add<Dense<float>>(6, 4);
    Rng rng(11);
    model.add<Scale<float>>(4).scale().fill_uniform(rng, 0.5, 2.0);
    save(model, "custom_layer.facet");

    // Scale's config() is {"Scale", {{"features", 4}}}; its header registered the type name, so
    // make_layer, which load() calls for every layer, knows it.
    Sequential<float> loaded = load<float>("custom_layer.facet");

    Tensor<float> x(Shape{3, 6});
    x.fill_normal(rng, 0.0, 1.0);
    const Tensor<float> expected = model.predict(x);
    const Tensor<float>& got = loaded.predict(x);
    bool same = true;
    for (std::size_t i = 0; i < got.size(); ++i) same = same && got[i] == expected[i];
    std::printf("%s: loaded model %s\n", loaded.layer(1).type().c_str(),
                same ? "predicts the same" : "DIFFERS");
    return same ? 0 : 1;
}
