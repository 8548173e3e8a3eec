// fer/domain_shift.hpp — FER-2013 faces as "another camera" would see them, to measure how well
// fine-tuning on corrections adapts a model to its users' pictures. A camera is a fixed set of
// defects drawn once from a seed (low resolution, lens blur, a colour cast that the gray
// conversion turns into clipped, shifted tones, gamma, sensor noise, JPEG blockiness); every image
// then gets the camera's defects plus noise of its own, drawn from (seed, image key), so the same
// image always comes out the same. `fer shift` (run_shift) writes shifted faces as an image folder.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <facet/core/random.hpp>
#include <facet/data/dataset.hpp>
#include <facet/data/image.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "emotions.hpp"

namespace fer {

/// The defects of one camera, applied in this order to a 48 x 48 gray face.
struct CameraProfile {
    std::size_t low_resolution =
        24;                   ///< the face is seen at this many pixels a side, then upscaled
    double blur_sigma = 0.8;  ///< Gaussian lens blur, in pixels of the 48 x 48 face
    std::array<double, 3> cast = {1.25, 1.0, 0.7};  ///< gains of red, green, blue (a warm cast)
    double gamma = 0.6;                             ///< out = in^gamma (< 1 brightens shadows)
    double contrast = 0.75, brightness = 20;        ///< out = contrast * (in - 128) + 128 + b
    double noise_sigma = 10;                        ///< sensor noise, in gray levels
    int jpeg_quality = 20;                          ///< 8 x 8 DCT quantisation (1 worst .. 100)

    /// A camera drawn from `seed`: each defect in a range around the defaults above, so two seeds
    /// are two different cameras and one seed is always the same camera.
    static CameraProfile from_seed(std::uint64_t seed) {
        facet::Rng rng(facet::detail::mix_seed(seed, 0x636d, 1));
        auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * rng.uniform(); };
        CameraProfile p;
        p.low_resolution = static_cast<std::size_t>(std::lround(uniform(20, 28)));
        p.blur_sigma = uniform(0.6, 1.1);
        const double warm = uniform(-1, 1);  // warm (red up, blue down) or cold
        p.cast = {1 + 0.3 * warm, 1.0, 1 - 0.3 * warm};
        p.gamma = rng.uniform() < 0.5 ? uniform(0.5, 0.7) : uniform(1.5, 1.9);
        p.contrast = uniform(0.65, 0.85);
        p.brightness = uniform(-25, 25);
        p.noise_sigma = uniform(8, 14);
        p.jpeg_quality = static_cast<int>(std::lround(uniform(15, 30)));
        return p;
    }
    std::string describe() const {
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "seen at %zux%zu, blur %.2f px, cast R%.2f G%.2f B%.2f, gamma %.2f, contrast "
                      "%.2f, brightness %+.0f, noise %.1f, JPEG-like quality %d",
                      low_resolution, low_resolution, blur_sigma, cast[0], cast[1], cast[2], gamma,
                      contrast, brightness, noise_sigma, jpeg_quality);
        return buf;
    }
};

namespace detail {

/// Separable Gaussian blur of a side x side image (borders repeat the edge).
inline void gaussian_blur(std::vector<double>& img, std::size_t side, double sigma) {
    if (sigma <= 0) return;
    const int radius = static_cast<int>(std::ceil(3 * sigma));
    std::vector<double> kernel(static_cast<std::size_t>(2 * radius + 1));
    double sum = 0;
    for (int k = -radius; k <= radius; ++k)
        sum += kernel[static_cast<std::size_t>(k + radius)] =
            std::exp(-0.5 * k * k / (sigma * sigma));
    for (double& k : kernel) k /= sum;
    std::vector<double> tmp(img.size());
    const int n = static_cast<int>(side);
    for (int pass = 0; pass < 2; ++pass) {
        for (int y = 0; y < n; ++y)
            for (int x = 0; x < n; ++x) {
                double acc = 0;
                for (int k = -radius; k <= radius; ++k) {
                    const int sx = pass == 0 ? std::clamp(x + k, 0, n - 1) : x;
                    const int sy = pass == 1 ? std::clamp(y + k, 0, n - 1) : y;
                    acc += kernel[static_cast<std::size_t>(k + radius)] *
                           img[static_cast<std::size_t>(sy * n + sx)];
                }
                tmp[static_cast<std::size_t>(y * n + x)] = acc;
            }
        img.swap(tmp);
    }
}

/// JPEG's blockiness: each 8 x 8 block through a DCT, quantised with the standard luminance
/// table scaled for `quality` (as libjpeg scales it), and back. `side` must be a multiple of 8.
inline void jpeg_like(std::vector<double>& img, std::size_t side, int quality) {
    static constexpr int luminance[64] = {
        16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
        14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
        18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
    quality = std::clamp(quality, 1, 100);
    const double scale = quality < 50 ? 5000.0 / quality : 200.0 - 2.0 * quality;
    double basis[8][8];  // basis[u][x] = c(u) cos((2x + 1) u pi / 16)
    for (int u = 0; u < 8; ++u)
        for (int x = 0; x < 8; ++x)
            basis[u][x] = (u == 0 ? std::sqrt(0.125) : 0.5) * std::cos((2 * x + 1) * u * M_PI / 16);
    for (std::size_t by = 0; by + 8 <= side; by += 8)
        for (std::size_t bx = 0; bx + 8 <= side; bx += 8) {
            double block[8][8], coef[8][8];
            for (int y = 0; y < 8; ++y)
                for (int x = 0; x < 8; ++x) block[y][x] = img[(by + y) * side + bx + x] - 128;
            for (int v = 0; v < 8; ++v)
                for (int u = 0; u < 8; ++u) {
                    double acc = 0;
                    for (int y = 0; y < 8; ++y)
                        for (int x = 0; x < 8; ++x) acc += basis[v][y] * basis[u][x] * block[y][x];
                    const double q = std::clamp(
                        std::floor((luminance[v * 8 + u] * scale + 50) / 100), 1.0, 255.0);
                    coef[v][u] = std::round(acc / q) * q;
                }
            for (int y = 0; y < 8; ++y)
                for (int x = 0; x < 8; ++x) {
                    double acc = 0;
                    for (int v = 0; v < 8; ++v)
                        for (int u = 0; u < 8; ++u) acc += basis[v][y] * basis[u][x] * coef[v][u];
                    img[(by + y) * side + bx + x] = acc + 128;
                }
        }
}

}  // namespace detail

/// Turns one side x side gray face (`in`) into the camera's picture of it (`out`; may be `in`).
/// `image_key` picks the image's own noise (e.g. its index in the data set).
inline void shift_face(const CameraProfile& camera, std::uint64_t seed, std::uint64_t image_key,
                       const std::uint8_t* in, std::uint8_t* out, std::size_t side) {
    const std::size_t n = side * side;
    std::vector<std::uint8_t> bytes(in, in + n);
    if (camera.low_resolution > 0 && camera.low_resolution < side) {  // a smaller sensor
        std::vector<std::uint8_t> small(camera.low_resolution * camera.low_resolution);
        facet::resize_gray(bytes.data(), side, side, small.data(), camera.low_resolution,
                           camera.low_resolution);
        facet::resize_gray(small.data(), camera.low_resolution, camera.low_resolution, bytes.data(),
                           side, side);
    }
    std::vector<double> img(bytes.begin(), bytes.end());
    detail::gaussian_blur(img, side, camera.blur_sigma);
    // The colour cast: the gray scene as RGB, each channel's gain, clipping, then back to gray
    // with the usual luma weights. What survives in gray is a tone shift and clipped highlights.
    for (double& v : img) {
        double luma = 0;
        const double weights[3] = {0.299, 0.587, 0.114};
        for (int c = 0; c < 3; ++c) luma += weights[c] * std::min(255.0, v * camera.cast[c]);
        v = 255.0 * std::pow(std::clamp(luma / 255.0, 0.0, 1.0), camera.gamma);
        v = camera.contrast * (v - 128) + 128 + camera.brightness;
    }
    facet::Rng rng(facet::detail::mix_seed(seed, image_key, 2));
    for (double& v : img) v += camera.noise_sigma * rng.normal();
    for (double& v : img) v = std::clamp(v, 0.0, 255.0);
    if (side % 8 == 0) detail::jpeg_like(img, side, camera.jpeg_quality);
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<std::uint8_t>(std::lround(std::clamp(img[i], 0.0, 255.0)));
}

/// Every image of `data` as `camera` sees it (image i keyed by `first_key + i`).
inline facet::Dataset shift_dataset(const facet::Dataset& data, const CameraProfile& camera,
                                    std::uint64_t seed, std::uint64_t first_key = 0) {
    facet::check(data.height == data.width, "shift_dataset: the faces must be square");
    facet::Dataset out = data;
    for (std::size_t i = 0; i < data.size(); ++i)
        shift_face(camera, seed, first_key + i, data.image(i),
                   out.pixels.data() + i * data.image_size(), data.width);
    return out;
}

inline Cli shift_cli() {
    Cli cli("shift",
            "Writes faces of a split as another camera would see them (low resolution, blur, "
            "colour cast turned gray, gamma, contrast, noise, JPEG-like blockiness; the camera "
            "drawn from --camera-seed), as an image folder OUT/<emotion>/<split>_<index>.png, for "
            "measuring adaptation to a new domain (scripts/finetune-experiment.sh).");
    cli.option("data", "DIR|CSV", "FER-2013 as image folders or CSV (default: data/fer2013)")
        .option("split", "NAME", "train or test (the training split is taken whole)", "test")
        .option("out", "DIR", "output folder (one folder per emotion)")
        .option("camera-seed", "N", "which camera", "1")
        .option("count", "N", "how many faces, taken in a seeded random order (0: all)", "0")
        .option("skip", "N", "leave out the first N faces of that order (disjoint sets)", "0")
        .option("order-seed", "N", "seed of the random order", "7")
        .flag("no-camera",
              "write the faces as they are, unchanged: the control of a fine-tuning experiment, "
              "which then measures what further training alone costs the old faces");
    return cli;
}

/// Runs `fer shift`.
inline int run_shift(const Cli& cli) {
    const DataChoice data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    const facet::DataSplits splits = load_splits(data, {});
    const std::string split_name = cli.str("split");
    const facet::Dataset& split =
        split_name == "train" ? *splits.training() : splits.at(split_name);
    const long long count = cli.integer("count"), skip = cli.integer("skip");
    facet::check(count >= 0 && skip >= 0, "shift: --count and --skip must not be negative");
    std::vector<std::size_t> order(split.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    facet::Rng rng(static_cast<std::uint64_t>(cli.integer("order-seed")));
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    const std::size_t first = std::min<std::size_t>(static_cast<std::size_t>(skip), order.size());
    const std::size_t last =
        count == 0 ? order.size() : std::min(order.size(), first + static_cast<std::size_t>(count));
    const auto seed = static_cast<std::uint64_t>(cli.integer("camera-seed"));
    const CameraProfile camera = CameraProfile::from_seed(seed);
    const bool unchanged = cli.has("no-camera");
    const fs::path out = cli.str("out");
    std::vector<std::uint8_t> face(split.image_size());
    for (std::size_t k = first; k < last; ++k) {
        const std::size_t i = order[k];
        // Keyed by the split and index, so a face is shifted the same way whatever --count.
        if (unchanged)
            std::copy_n(split.image(i), face.size(), face.data());
        else
            shift_face(camera, seed, (split_name == "train" ? 0x10000000ull : 0) + i,
                       split.image(i), face.data(), split.width);
        const fs::path dir = out / split.class_names[static_cast<std::size_t>(split.labels[i])];
        fs::create_directories(dir);
        facet::write_png(dir / (split_name + "_" + std::to_string(i) + ".png"), face.data(),
                         split.width, split.height);
    }
    std::cout << "wrote " << last - first << " faces of '" << split.split << "' to " << out.string()
              << (unchanged
                      ? " (unchanged)\n"
                      : " (camera " + std::to_string(seed) + ": " + camera.describe() + ")\n");
    return 0;
}

}  // namespace fer
