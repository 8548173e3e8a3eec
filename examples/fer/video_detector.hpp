// fer/video_detector.hpp — the face detector `fer video` uses: OpenCV's frontal-face Haar cascade
// behind the vision::FaceDetector interface, detecting on a reduced copy of the frame when
// DetectorOptions::downscale_to asks for it, and the smallest detection size that loses nothing.
// Read next: fer/video.hpp.
#pragma once

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include <facet/core/error.hpp>
#include <facet/vision/face_detector.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

namespace fer {

/// The back-end `fer video` uses when --detector is not given.
inline std::string default_video_detector() {
    return "opencv";
}

/// The side of the smallest face the back-end's model finds: the Haar cascade's 20 x 20 window.
inline int detector_window(const std::string& name) {
    facet::check(name == "opencv", "video: unknown face detector '", name, "' (known: opencv)");
    return 20;
}

/// The smallest longer side a frame of `longer_side` pixels can be shrunk to before detection so
/// that a face of `min_face` pixels still covers the detector's window: no face that the full
/// frame would give is lost, and the detector scans (window / min_face)^2 as many pixels.
/// 0 when no shrinking is possible.
inline double lossless_detect_size(const std::string& name, int min_face, int longer_side) {
    const double scale = static_cast<double>(detector_window(name)) / min_face;
    return scale < 1 && longer_side > 0 ? std::ceil(longer_side * scale) : 0.0;
}

/// OpenCV's Haar cascade (haarcascade_frontalface_alt2.xml from opencv-data; the environment
/// variable FACET_FACE_CASCADE names another file).
class HaarFaceDetector : public facet::vision::FaceDetector {
  public:
    explicit HaarFaceDetector(facet::vision::DetectorOptions options) : options_(options) {
        const char* env = std::getenv("FACET_FACE_CASCADE");
        const std::string file = env && *env ? env : default_cascade();
        facet::check(!file.empty(),
                     "video: no face cascade (install opencv-data or set FACET_FACE_CASCADE)");
        facet::check(cascade_.load(file), "video: cannot load the face cascade ", file);
    }
    std::string name() const override { return "opencv"; }

    /// Faces in `image`, most confident (most neighbours) first.
    std::vector<facet::vision::DetectedFace> detect(const facet::vision::GrayView& image) override {
        const cv::Mat full(image.height, image.width, CV_8U,
                           const_cast<std::uint8_t*>(image.pixels), image.stride);
        const int longer = std::max(image.width, image.height);
        const double scale = options_.downscale_to > 0 && options_.downscale_to < longer
                                 ? options_.downscale_to / longer
                                 : 1.0;
        const cv::Mat* scan = &full;
        if (scale < 1) {
            cv::resize(full, small_, cv::Size(), scale, scale, cv::INTER_AREA);
            scan = &small_;
        }
        const int min_side = std::max(20, static_cast<int>(std::floor(options_.min_face * scale)));
        std::vector<cv::Rect> boxes;
        std::vector<int> neighbours;
        cascade_.detectMultiScale(*scan, boxes, neighbours, 1.1, 3, 0,
                                  cv::Size(min_side, min_side));
        std::vector<facet::vision::DetectedFace> faces;
        for (std::size_t i = 0; i < boxes.size(); ++i) {
            const cv::Rect& b = boxes[i];
            faces.push_back({{static_cast<int>(std::lround(b.x / scale)),
                              static_cast<int>(std::lround(b.y / scale)),
                              static_cast<int>(std::lround(b.width / scale)),
                              static_cast<int>(std::lround(b.height / scale))},
                             static_cast<float>(neighbours[i]),
                             {}});
        }
        std::stable_sort(faces.begin(), faces.end(),
                         [](const auto& a, const auto& b) { return a.score > b.score; });
        return faces;
    }

  private:
    static std::string default_cascade() {
#ifdef FACET_FACE_CASCADE
        return FACET_FACE_CASCADE;
#else
        return "";
#endif
    }
    facet::vision::DetectorOptions options_;
    cv::CascadeClassifier cascade_;
    cv::Mat small_;
};

/// The back-end called `name` with `options`.
inline std::unique_ptr<facet::vision::FaceDetector> make_video_detector(
    const std::string& name, const facet::vision::DetectorOptions& options) {
    detector_window(name);  // refuses an unknown name
    return std::make_unique<HaarFaceDetector>(options);
}

}  // namespace fer
