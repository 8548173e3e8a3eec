// facet/vision/opencv_detector.hpp — the OpenCV back-end of FaceDetector: OpenCV's boosted
// cascades of Haar-like or LBP features (Viola-Jones), with the cascade files found at run time
// (Debian: opencv-data installs them under /usr/share/opencv4). No landmarks. OPT-IN: a program
// that includes this header links OpenCV (CMake: opencv_objdetect and opencv_imgproc).
// Read next: vision/dlib_detector.hpp (the other back-end), vision/detectors.hpp (by name).
#pragma once

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

/// The folders searched for a cascade file, in order: $FACET_OPENCV_CASCADES (one folder), then
/// where OpenCV's packages install them.
inline std::vector<std::filesystem::path> opencv_cascade_folders() {
    std::vector<std::filesystem::path> folders;
    if (const char* env = std::getenv("FACET_OPENCV_CASCADES"); env && *env)
        folders.emplace_back(env);
    for (const char* prefix : {"/usr/share/opencv4", "/usr/local/share/opencv4",
                               "/usr/share/opencv", "/usr/local/share/opencv"})
        for (const char* kind : {"haarcascades", "lbpcascades"})
            folders.push_back(std::filesystem::path(prefix) / kind);
    return folders;
}

/// The path of the cascade file `file_name` (e.g. "haarcascade_frontalface_default.xml"), or a
/// facet::Error naming the folders searched and the package that installs it.
inline std::filesystem::path find_opencv_cascade(const std::string& file_name) {
    std::string searched;
    for (const auto& folder : opencv_cascade_folders()) {
        if (std::filesystem::exists(folder / file_name)) return folder / file_name;
        searched += (searched.empty() ? "" : ", ") + folder.string();
    }
    throw Error(facet::detail::concat("OpenCV face cascade ", file_name, " not found (searched ",
                                      searched,
                                      "; Debian: apt-get install opencv-data, or set "
                                      "FACET_OPENCV_CASCADES to the folder that holds it)"));
}

/// Viola-Jones face detection with one of OpenCV's frontal-face cascades. The score is the
/// cascade's last-stage sum (OpenCV's "level weight"): larger is surer, about 0 at the threshold.
class OpenCvFaceDetector : public FaceDetector {
  public:
    /// Which trained cascade: Haar-like features (slower, the usual choice) or LBP (faster).
    enum class Cascade { haar, lbp };

    /// Loads the cascade (found with find_opencv_cascade unless `cascade_file` names one).
    explicit OpenCvFaceDetector(DetectorOptions options = {}, Cascade cascade = Cascade::haar,
                                std::string cascade_file = "")
        : options_(options), kind_(cascade) {
        check(options.min_face > 0, "OpenCvFaceDetector: min_face must be positive");
        check(options.min_neighbors >= 0, "OpenCvFaceDetector: min_neighbors must be 0 or more");
        if (options.min_neighbors > 0) min_neighbors_ = options.min_neighbors;
        check(options.scale_step == 0 || (options.scale_step > 1 && options.scale_step <= 2),
              "OpenCvFaceDetector: scale_step must be 0 (default) or in (1, 2], got ",
              options.scale_step);
        if (options.scale_step > 0) scale_step_ = options.scale_step;
        if (!std::isnan(options.threshold)) threshold_ = options.threshold;
        if (cascade_file.empty())
            cascade_file = find_opencv_cascade(cascade == Cascade::haar
                                                   ? "haarcascade_frontalface_default.xml"
                                                   : "lbpcascade_frontalface_improved.xml")
                               .string();
        check(classifier_.load(cascade_file), "OpenCvFaceDetector: cannot load the cascade ",
              cascade_file);
    }

    std::string name() const override { return kind_ == Cascade::haar ? "opencv" : "opencv-lbp"; }

    std::vector<DetectedFace> detect(const GrayView& image) override {
        check(image.pixels != nullptr && image.width > 0 && image.height > 0 &&
                  image.stride >= static_cast<std::size_t>(image.width),
              "OpenCvFaceDetector::detect: empty or malformed image view");
        const cv::Mat full(image.height, image.width, CV_8UC1,
                           const_cast<std::uint8_t*>(image.pixels), image.stride);
        double scale = 1;
        const int longer = std::max(image.width, image.height);
        cv::Mat work;
        if (options_.downscale_to > 0 && longer > options_.downscale_to) {
            scale = options_.downscale_to / longer;
            cv::resize(full, work, cv::Size(), scale, scale, cv::INTER_AREA);
        } else {
            work = full;
        }
        // Equalising spreads the contrast of dim or washed-out pictures, as OpenCV's own
        // face-detection sample does; the cascades were trained on such normalised windows.
        cv::Mat equalised;
        cv::equalizeHist(work, equalised);
        const int min_side = std::max(1, static_cast<int>(std::lround(options_.min_face * scale)));
        std::vector<cv::Rect> rects;
        std::vector<int> levels;
        std::vector<double> weights;
        classifier_.detectMultiScale(equalised, rects, levels, weights, scale_step_, min_neighbors_,
                                     0, cv::Size(min_side, min_side), cv::Size(), true);
        std::vector<DetectedFace> faces;
        for (std::size_t i = 0; i < rects.size(); ++i) {
            if (i < weights.size() && weights[i] < threshold_) continue;
            DetectedFace f;
            f.box = {static_cast<int>(std::lround(rects[i].x / scale)),
                     static_cast<int>(std::lround(rects[i].y / scale)),
                     static_cast<int>(std::lround(rects[i].width / scale)),
                     static_cast<int>(std::lround(rects[i].height / scale))};
            f.score = i < weights.size() ? static_cast<float>(weights[i]) : 0.f;
            faces.push_back(std::move(f));
        }
        std::stable_sort(
            faces.begin(), faces.end(),
            [](const DetectedFace& a, const DetectedFace& b) { return a.score > b.score; });
        return faces;
    }

  private:
    DetectorOptions options_;
    Cascade kind_;
    int min_neighbors_ = 3;
    double scale_step_ = 1.1;  ///< between the sizes of window scanned
    double threshold_ = -std::numeric_limits<double>::infinity();
    cv::CascadeClassifier classifier_;
};

}  // namespace facet::vision
