// fer/face_verifier.hpp — the second stage of fer's face detection (vision/verified_detector.hpp):
// a small CNN, trained by `fer train --classes face,background` on FER-2013's faces against the
// false faces dlib finds in pictures without people (scripts/face-verifier-data.py), sees each
// candidate's 48 x 48 crop, cut out at FER-2013's framing (by the eyes where there are landmarks,
// as its training negatives were), and says whether it is a face. The detector can then propose
// at a lower threshold. The thresholds were chosen on validation scenes (docs/faces.md); the
// project ships the verifier as models/face-verifier.facet, used when asked: it found more false
// faces in real pictures without people than dlib alone.
// Read next: predict.hpp (where fer predict builds its detector).
#pragma once

#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <facet/core/error.hpp>
#include <facet/vision/detectors.hpp>
#include <facet/vision/verified_detector.hpp>

#include "cli.hpp"
#include "default_model.hpp"
#include "evaluate.hpp"
#include "face_crop.hpp"

namespace fer {

/// The verifier the project ships, relative to the repository's root.
inline const char* const shipped_verifier_path = "models/face-verifier.facet";

/// How the first stage proposes when the verifier follows it, the probability the verifier must
/// give a candidate to keep it, and how much kept faces may overlap: chosen on the validation
/// scenes (docs/faces.md) as the highest recall with a precision of at least 0.90. dlib proposes
/// far below its own threshold 0; OpenCV's cascades with 1 neighbour instead of 3. At such low
/// thresholds a face is proposed several times, at several scales, so of faces whose boxes overlap
/// only the most probable is kept.
struct VerifierDefaults {
    double min_probability = 0.1;
    double dlib_threshold = -1.0;
    int opencv_neighbours = 0;  ///< 0: the cascade's own
    /// Of faces whose boxes overlap above this IoU, the most probable is kept (1: all).
    double max_iou = 0.2;
    /// Candidates the first stage scores at least this rank ahead of the others in that
    /// suppression: dlib's own threshold, so that a box dlib doubts cannot displace one it is
    /// sure of (docs/faces.md; infinity: off).
    double sure_score = 0;
};

/// The defaults for the detector named `detector` ("dlib", "opencv", "opencv-lbp").
inline VerifierDefaults verifier_defaults(const std::string& detector) {
    if (detector == "opencv" || detector == "opencv-lbp")
        return {0.2, 0, 1, 0.2, std::numeric_limits<double>::infinity()};
    return {};
}

/// The probability of the class "face" for each candidate of `image`, from `verifier`'s view of
/// its crop (fer_face_crop with `detector`'s framing, by the eyes where the candidate has
/// landmarks), in batches of at most 64.
inline std::vector<float> face_probabilities(TrainedModel& verifier, const std::string& detector,
                                             const vision::GrayView& image,
                                             const std::vector<vision::DetectedFace>& candidates) {
    const int face = facet::find_class(verifier.classes, "face");
    facet::check(face >= 0, "the face verifier has no class 'face'");
    std::vector<float> p;
    constexpr std::size_t batch = 64;
    for (std::size_t first = 0; first < candidates.size(); first += batch) {
        const std::size_t n = std::min(batch, candidates.size() - first);
        std::vector<std::uint8_t> crops;
        for (std::size_t i = first; i < first + n; ++i) {
            // By the eyes where there are landmarks, as its hard negatives were cut out.
            const std::vector<std::uint8_t> crop =
                fer_face_crop(image, candidates[i], detector, CropFraming::eyes);
            crops.insert(crops.end(), crop.begin(), crop.end());
        }
        facet::Tensor<float> x(facet::Shape{n, 1, fer_image_side, fer_image_side});
        verifier.norm.apply(crops.data(), x.data(), crops.size());
        const facet::Tensor<float>& out = verifier.model.predict(x);
        for (std::size_t i = 0; i < n; ++i)
            p.push_back(out.data()[i * out.dim(1) + static_cast<std::size_t>(face)]);
    }
    return p;
}

/// Adds --verifier and --verifier-threshold to `cli`; `fallback` is --verifier's default ("auto"
/// or "none").
inline Cli& add_verifier_options(Cli& cli, const std::string& fallback) {
    cli.option("verifier", "FILE|auto|none",
               std::string("a face/background network that checks each face the detector proposes "
                           "(the detector then proposes at a low threshold); auto: the shipped ") +
                   shipped_verifier_path + " when found; none: the detector alone",
               fallback)
        .option("verifier-threshold", "P",
                "the probability of being a face the verifier must give a face to keep it (auto: "
                "0.1 after dlib, 0.2 after the OpenCV cascades)",
                "auto");
    return cli;
}

/// The verifier file --verifier names: the file itself, the shipped one for "auto" (empty when it
/// is not found), or empty for "none".
inline std::string verifier_to_use(const Cli& cli) {
    const std::string choice = cli.str("verifier");
    if (choice == "none") return "";
    if (choice != "auto") return choice;
    std::error_code ec;
    for (const fs::path& place : shipped_file_candidates(shipped_verifier_path))
        if (fs::is_regular_file(place, ec)) return place.lexically_normal().string();
    return "";
}

/// The detector fer predict and fer video run: make_face_detector(name, options) followed, when
/// --verifier gives one, by the verifier; the detector then proposes as verifier_defaults() says,
/// unless --detector-threshold (or options) set it otherwise.
inline std::unique_ptr<vision::FaceDetector> make_cli_detector(const Cli& cli,
                                                               const std::string& name,
                                                               vision::DetectorOptions options) {
    const std::string file = verifier_to_use(cli);
    if (file.empty()) {
        if (cli.str("verifier") == "auto")
            std::cerr << "fer " << cli.command() << ": no face verifier found ("
                      << shipped_verifier_path << "); the detector works alone\n";
        return vision::make_face_detector(name, options);
    }
    std::cerr << "fer " << cli.command() << ": checking faces with the verifier " << file << "\n";
    const std::string resolved =
        name.empty() || name == "default" ? vision::default_face_detector() : name;
    const VerifierDefaults defaults = verifier_defaults(resolved);
    double min_probability = defaults.min_probability;
    if (cli.str("verifier-threshold") != "auto") {
        min_probability = cli.number("verifier-threshold");
        facet::check(min_probability >= 0 && min_probability <= 1, cli.command(),
                     ": --verifier-threshold must be in [0, 1], got ", min_probability);
    }
    if (cli.str("detector-threshold") == "auto" && resolved == "dlib")
        options.threshold = defaults.dlib_threshold;
    if (options.min_neighbors == 0) options.min_neighbors = defaults.opencv_neighbours;
    std::unique_ptr<vision::FaceDetector> proposals = vision::make_face_detector(name, options);
    auto verifier = std::make_shared<TrainedModel>(load_trained(file));
    facet::check(facet::find_class(verifier->classes, "face") >= 0, file,
                 ": not a face verifier (its classes have no 'face')");
    const std::string detector = proposals->name();
    return std::make_unique<vision::VerifiedFaceDetector>(
        std::move(proposals),
        [verifier, detector](const vision::GrayView& image,
                             const std::vector<vision::DetectedFace>& candidates) {
            return face_probabilities(*verifier, detector, image, candidates);
        },
        min_probability, defaults.max_iou, defaults.sure_score);
}

}  // namespace fer
