// The smallest embedding of facet: one include, one model file written by `fer train`, one 48 x 48
// face picture in, its emotion out.
//
//     predict_face model.facet face.png     ->  happy (0.87)
#define FACET_IMPLEMENT_STB  // compile the image decoder in this file
#include <facet/facet.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL.facet FACE_IMAGE\n", argv[0]);
        return 2;
    }
    try {
        facet::ModelFile<float> file = facet::load_model_file<float>(argv[1]);
        // The model carries how its pixels were standardised and the names of its classes.
        facet::Normalization norm;
        norm.mean = std::stof(file.note("normalization.mean", "0"));
        norm.stddev = std::stof(file.note("normalization.stddev", "1"));
        std::vector<std::string> classes;
        std::string names = file.note("classes") + ",";
        for (std::size_t comma; (comma = names.find(',')) != std::string::npos;
             names.erase(0, comma + 1))
            classes.push_back(names.substr(0, comma));

        // The face, gray, resampled to 48 x 48, standardised as in training.
        const facet::GrayImage image = facet::load_image(argv[2]);
        facet::Tensor<float> x(facet::Shape{1, 1, 48, 48});
        norm.apply(facet::to_square_gray(image, 48).data(), x.data(), x.size());

        const facet::Tensor<float>& p = file.model.predict(x);
        const int best = facet::argmax_row(p.data(), p.size());
        const std::size_t k = static_cast<std::size_t>(best);
        std::printf("%s (%.2f)\n", k < classes.size() ? classes[k].c_str() : "?", double(p[k]));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
