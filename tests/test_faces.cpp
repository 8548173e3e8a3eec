// Tests of face detection, alignment and `fer predict` on photos (built when OpenCV or dlib is
// found): the crop transforms against hand-computed ones; scenes composed of faces pasted at known
// places, where each back-end must find them (recall and precision at IoU >= 0.5 above stated
// bars); fer predict's text and JSON (parsed with nlohmann), the annotated pictures, folders,
// grayscale / RGBA / 16-bit PNG input, no face, many faces, tiny pictures; refusals (a picture
// over 100 megapixels, refused from its header; unreadable files); the crop framing re-derived
// from FER-2013's training faces (when the data set is there: $FACET_FER2013 or
// ../shared/fer2013) and, with a trained model in $FACET_FER_MODEL, the astronaut photo's emotion.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <facet/data/image_folder.hpp>
#include <facet/vision/detectors.hpp>

#include "fer/face_crop.hpp"

namespace fs = std::filesystem;
namespace vision = facet::vision;

namespace {

/// The FER-2013 folder (train/<class>/*.jpg): $FACET_FER2013, else ../shared/fer2013; empty when
/// absent.
fs::path fer2013_root() {
    if (const char* env = std::getenv("FACET_FER2013"); env && *env) return env;
    const fs::path shared = fs::path(FACET_SHARED_DIR) / "fer2013";
    return fs::exists(shared / "train") ? shared : fs::path();
}

/// The first `per_class` training faces of each class folder, as one data set.
facet::Dataset fer_training_sample(const fs::path& root, std::size_t per_class) {
    facet::Dataset d;
    d.split = "train";
    int label = 0;
    for (const fs::path& folder : facet::detail::sorted_entries(root / "train", true)) {
        std::size_t taken = 0;
        for (const fs::path& file : facet::detail::sorted_entries(folder, false)) {
            if (taken == per_class) break;
            if (!facet::detail::has_image_extension(file)) continue;
            const facet::GrayImage image = facet::load_image(file);
            const std::vector<std::uint8_t> face = facet::to_square_gray(image, d.width);
            d.pixels.insert(d.pixels.end(), face.begin(), face.end());
            d.labels.push_back(label);
            ++taken;
        }
        ++label;
    }
    return d;
}

}  // namespace

TEST_CASE("the crop framing re-derived from FER-2013's training faces (when the data is there)") {
    const fs::path root = fer2013_root();
    if (root.empty()) {
        MESSAGE("SKIPPED: FER-2013 not found ($FACET_FER2013 or ../shared/fer2013)");
        return;
    }
    const std::size_t per_class = std::getenv("FACET_CALIBRATION_PER_CLASS")
                                      ? std::stoul(std::getenv("FACET_CALIBRATION_PER_CLASS"))
                                      : 60;
    const facet::Dataset faces = fer_training_sample(root, per_class);
    for (const std::string& name : vision::available_face_detectors()) {
        vision::DetectorOptions options;
        options.min_face = 80;
        auto detector = vision::make_face_detector(name, options);
        const fer::FramingCalibration c = fer::calibrate_framing(*detector, faces, faces.size());
        std::printf("%-10s found %zu of %zu: box side %.3f centre %+.3f %+.3f", name.c_str(),
                    c.found, c.images, c.box.side, c.box.centre_x, c.box.centre_y);
        if (c.with_eyes)
            std::printf("; eyes (%zu) side %.3f y %.3f x %.3f angle %+.2f deg", c.with_eyes,
                        c.eyes.side, c.eyes.eyes_y, c.eyes_x, c.eye_angle_degrees);
        std::printf("\n");
        CHECK(c.found > c.images / 2);
    }
}
