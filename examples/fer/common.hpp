// fer/common.hpp — what every fer subcommand shares: finding the data, the metadata a model file
// carries (pixel normalisation, class names), and batched evaluation of a model on a data set.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <facet/core/context.hpp>
#include <facet/data/augment.hpp>
#include <facet/data/batch_loader.hpp>
#include <facet/kernels/bf16_gemm.hpp>
#include <facet/metrics/classification.hpp>
#include <facet/model/sequential.hpp>

#include "fer_csv.hpp"
#include "synthetic_faces.hpp"

namespace fer {

namespace fs = std::filesystem;

/// The --precision a command runs its model in: fp32, or bf16 (mixed precision: the
/// convolutions' and dense layers' products from bf16 operands with fp32 sums; everything else
/// fp32). Names anything else in an error that starts with `command`.
inline facet::Precision parse_precision(const std::string& name, const char* command) {
    facet::Precision p = facet::Precision::Fp32;
    facet::check(name != "int8" && facet::precision_from_name(name, p), command,
                 ": --precision must be fp32 or bf16, got '", name,
                 "' (an int8 model comes from fer quantize)");
    return p;
}

/// Sets the bf16 GEMM's kernel of the process default context from --bf16-kernel: auto (the best
/// the CPU has: AMX tiles when they pass their first-use check, else AVX512-BF16, else
/// portable), avx512-bf16, amx-bf16 or portable. A kernel the CPU lacks is an error.
inline void set_bf16_kernel(const std::string& name, const char* command) {
    using facet::Bf16Isa;
    for (Bf16Isa isa : {Bf16Isa::Auto, Bf16Isa::Avx512Bf16, Bf16Isa::Amx, Bf16Isa::Portable})
        if (name == facet::bf16_isa_name(isa)) {
            facet::check(facet::bf16_isa_supported(isa), command, ": --bf16-kernel ", name,
                         ": this CPU (or its operating system) does not provide it");
            facet::process_context().bf16_isa = isa;
            return;
        }
    throw facet::Error(std::string(command) +
                       ": --bf16-kernel must be auto, avx512-bf16, amx-bf16 or portable, got '" +
                       name + "'");
}

/// The line to print when bf16 products would run on the portable reference kernel, else "".
inline std::string bf16_speed_note(facet::Precision p) {
    if (p != facet::Precision::Bf16 || facet::bf16_isa() != facet::Bf16Isa::Portable) return "";
    return "note: this CPU has no AVX512-BF16: bf16 products run on the portable reference "
           "kernel, many times slower than fp32\n";
}

/// Seconds since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Where the data come from: a CSV file or a folder, or (when `path` is empty and data/fer2013
/// is absent) the built-in synthetic faces.
struct DataChoice {
    std::string path;  ///< empty: synthetic
    bool synthetic() const { return path.empty(); }
    std::string describe() const {
        return synthetic() ? "synthetic cartoon faces (built in, NOT FER-2013)" : path;
    }
};

/// The data a run uses when --data is not given: data/fer2013 (a folder or a symlink), then
/// data/fer2013.csv, else synthetic.
inline DataChoice default_data() {
    for (const char* candidate : {"data/fer2013", "data/fer2013.csv"})
        if (fs::exists(candidate)) return {candidate};
    return {};
}

/// Loads every split of the chosen data (as FER-2013: its classes, 48 x 48 faces).
inline facet::DataSplits load_splits(const DataChoice& choice, const facet::ReadOptions& options) {
    if (choice.synthetic()) return make_synthetic_faces();
    return load_fer_data(choice.path, options);
}

/// Predictions of a model on a whole data set.
struct Evaluation {
    std::vector<float> probabilities;  ///< N x classes
    std::vector<int> predicted;
    double loss = 0;  ///< mean cross-entropy
    std::size_t classes = 0;
    float probability(std::size_t i, int c) const {
        return probabilities[i * classes + static_cast<std::size_t>(c)];
    }
};

/// Fills `ev`'s predictions (the most probable class of each face) and mean cross-entropy from
/// its probabilities.
inline void score_probabilities(Evaluation& ev, const facet::Dataset& data) {
    const std::size_t n = data.size();
    ev.predicted.resize(n);
    double loss = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const float* p = ev.probabilities.data() + i * ev.classes;
        ev.predicted[i] = facet::argmax_row(p, ev.classes);
        loss -= std::log(std::max(1e-12, static_cast<double>(p[data.labels[i]])));
    }
    ev.loss = loss / static_cast<double>(n);
}

/// Runs the model in inference mode over `data` in batches. With `flip_tta`, each face is also
/// seen mirrored and the two probability vectors are averaged (test-time augmentation).
inline Evaluation evaluate(facet::Sequential<float>& model, const facet::Dataset& data,
                           const facet::Normalization& norm, std::size_t batch_size = 256,
                           bool flip_tta = false) {
    facet::check(!data.empty(), "evaluate: the split '", data.split, "' is empty");
    const std::size_t n = data.size(), side_h = data.height, side_w = data.width,
                      pixels = data.image_size();
    Evaluation ev;
    facet::Tensor<float> x;
    std::vector<float> mirrored;
    for (std::size_t begin = 0; begin < n; begin += batch_size) {
        const std::size_t count = std::min(batch_size, n - begin);
        x.resize(facet::Shape{count, 1, side_h, side_w});
        for (std::size_t i = 0; i < count; ++i)
            norm.apply(data.image(begin + i), x.data() + i * pixels, pixels);
        const facet::Tensor<float>& p = model.predict(x);
        if (ev.classes == 0) {
            ev.classes = p.dim(1);
            ev.probabilities.resize(n * ev.classes);
        }
        std::copy(p.begin(), p.end(),
                  ev.probabilities.begin() + static_cast<std::ptrdiff_t>(begin * ev.classes));
        if (flip_tta) {
            for (std::size_t i = 0; i < count; ++i)
                for (std::size_t r = 0; r < side_h; ++r)
                    std::reverse(x.data() + i * pixels + r * side_w,
                                 x.data() + i * pixels + (r + 1) * side_w);
            const facet::Tensor<float>& q = model.predict(x);
            float* out = ev.probabilities.data() + begin * ev.classes;
            for (std::size_t k = 0; k < q.size(); ++k) out[k] = 0.5f * (out[k] + q[k]);
        }
    }
    score_probabilities(ev, data);
    return ev;
}

/// The views of each face a model is tested on, their probabilities averaged (test-time
/// augmentation): the face itself, or its centre crop of side `crop` resized to full size; with
/// `ten_crop`, the four corner crops and the centre one; with `flip`, each also mirrored. A model
/// trained on random crops (fer train --crop) is meant to see crops.
struct TestViews {
    bool flip = false;
    int crop = 0;  ///< side of the crops in pixels (0: the whole face)
    bool ten_crop = false;

    /// The views as augmentation parameters (Padding::Reflect; no view leaves the image).
    std::vector<facet::AugmentParams> params() const {
        std::vector<std::pair<double, double>> places{{0.5, 0.5}};
        if (ten_crop) places.insert(places.end(), {{0, 0}, {1, 0}, {0, 1}, {1, 1}});
        std::vector<facet::AugmentParams> views;
        for (const auto& [x, y] : places)
            for (const bool mirrored : {false, true}) {
                if (mirrored && !flip) continue;
                facet::AugmentParams p;
                p.crop_side = crop, p.crop_x = x, p.crop_y = y, p.flip = mirrored;
                views.push_back(p);
            }
        return views;
    }
    std::string describe() const {
        std::string d = ten_crop ? "ten-crop" : crop > 0 ? "centre crop" : "";
        if (crop > 0) d += " " + std::to_string(crop) + " px";
        if (ten_crop) return d;
        return flip ? (d.empty() ? "flip TTA" : d + ", flip TTA") : d;
    }
};

/// Each face's class probabilities, averaged over `views` (test-time augmentation): `faces` holds
/// `count` gray faces of `height` x `width` pixels one after another, standardised with `norm`
/// and shown to the model `batch_size` at a time. count x classes values, face after face.
inline std::vector<float> predict_views(facet::Sequential<float>& model, const std::uint8_t* faces,
                                        std::size_t count, std::size_t height, std::size_t width,
                                        const facet::Normalization& norm, const TestViews& views,
                                        std::size_t batch_size) {
    facet::check(batch_size > 0, "predict_views: the batch size must be positive");
    facet::check(views.crop >= 0 && static_cast<std::size_t>(views.crop) <= std::min(height, width),
                 "predict_views: a crop of ", views.crop, " pixels does not fit faces ", width,
                 " x ", height);
    const std::vector<facet::AugmentParams> params = views.params();
    const std::size_t pixels = height * width;
    std::vector<double> total;
    std::size_t classes = 0;
    facet::Tensor<float> x;
    for (std::size_t begin = 0; begin < count; begin += batch_size) {
        const std::size_t n = std::min(batch_size, count - begin);
        x.resize(facet::Shape{n, 1, height, width});
        for (const facet::AugmentParams& view : params) {
            for (std::size_t i = 0; i < n; ++i) {
                float* out = x.data() + i * pixels;
                facet::apply_augment(faces + (begin + i) * pixels, height, width, out, view,
                                     facet::Padding::Reflect);
                norm.apply(out, pixels);
            }
            const facet::Tensor<float>& p = model.predict(x);
            if (classes == 0) {
                classes = p.dim(1);
                total.assign(count * classes, 0.0);
            }
            for (std::size_t k = 0; k < p.size(); ++k) total[begin * classes + k] += p[k];
        }
    }
    std::vector<float> averaged(total.size());
    for (std::size_t k = 0; k < total.size(); ++k)
        averaged[k] = static_cast<float>(total[k] / static_cast<double>(params.size()));
    return averaged;
}

/// evaluate() through `views`: each face's probabilities averaged over its views.
inline Evaluation evaluate(facet::Sequential<float>& model, const facet::Dataset& data,
                           const facet::Normalization& norm, std::size_t batch_size,
                           const TestViews& views) {
    if (views.crop == 0 && !views.ten_crop)
        return evaluate(model, data, norm, batch_size, views.flip);
    facet::check(!data.empty(), "evaluate: the split '", data.split, "' is empty");
    Evaluation ev;  // predict_views checks that the crop fits
    ev.probabilities = predict_views(model, data.image(0), data.size(), data.height, data.width,
                                     norm, views, batch_size);
    ev.classes = ev.probabilities.size() / data.size();
    score_probabilities(ev, data);
    return ev;
}

}  // namespace fer
