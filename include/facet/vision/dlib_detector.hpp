// facet/vision/dlib_detector.hpp — the dlib back-end of FaceDetector: dlib's built-in frontal
// face detector (HOG features, a sliding linear SVM over an image pyramid) and its 68-point
// shape predictor (an ensemble of regression trees trained on iBUG 300-W), whose model file is
// found at run time (Debian: libdlib-data). OPT-IN: a program that includes this header links
// dlib (CMake: dlib::dlib).
// Read next: vision/detectors.hpp (picks a back-end by name), vision/align.hpp (uses the eyes).
#pragma once

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

namespace detail {
/// The folder for files facet derives at run time: $FACET_CACHE_DIR, else $XDG_CACHE_HOME/facet,
/// else ~/.cache/facet, else the system temp folder's facet/.
inline std::filesystem::path cache_folder() {
    if (const char* env = std::getenv("FACET_CACHE_DIR"); env && *env) return env;
    if (const char* env = std::getenv("XDG_CACHE_HOME"); env && *env)
        return std::filesystem::path(env) / "facet";
    if (const char* env = std::getenv("HOME"); env && *env)
        return std::filesystem::path(env) / ".cache" / "facet";
    return std::filesystem::temp_directory_path() / "facet";
}

/// `text` quoted for a POSIX shell.
inline std::string shell_quoted(const std::string& text) {
    std::string q = "'";
    for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

/// Decompresses the bzip2 file `packed` into the cache folder (once: later calls find it there)
/// and returns the decompressed file's path. The bzip2 program does the work; the file appears
/// under its final name only when complete (written to a temporary name, then renamed).
inline std::filesystem::path unpack_bz2_to_cache(const std::filesystem::path& packed) {
    const std::filesystem::path folder = cache_folder();
    const std::filesystem::path target = folder / packed.stem();  // drops ".bz2"
    if (std::filesystem::exists(target)) return target;
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    check(!ec, "cannot create the cache folder ", folder.string(), " (", ec.message(),
          "; set FACET_CACHE_DIR)");
    const std::filesystem::path partial = target.string() + ".partial";
    const std::string command = "bzip2 -dc " + shell_quoted(packed.string()) + " > " +
                                shell_quoted(partial.string()) + " 2>/dev/null";
    const bool ok = std::system(command.c_str()) == 0;
    if (ok) std::filesystem::rename(partial, target, ec);
    if (!ok || ec) {
        std::filesystem::remove(partial, ec);
        throw Error(facet::detail::concat("cannot decompress ", packed.string(), " into ",
                                          folder.string(), " (is bzip2 installed?)"));
    }
    return target;
}
}  // namespace detail

/// The path of dlib's 68-point landmark model: $FACET_DLIB_LANDMARKS when set, else
/// shape_predictor_68_face_landmarks.dat where libdlib-data installs it (/usr/share/dlib), or a
/// compressed .dat.bz2 there, decompressed once into the cache folder. Throws facet::Error naming
/// the places searched and the package when there is none.
inline std::filesystem::path find_dlib_landmark_model() {
    if (const char* env = std::getenv("FACET_DLIB_LANDMARKS"); env && *env) {
        const std::filesystem::path p = env;
        check(std::filesystem::exists(p), "FACET_DLIB_LANDMARKS names ", p.string(),
              ", which does not exist");
        return p.extension() == ".bz2" ? detail::unpack_bz2_to_cache(p) : p;
    }
    const std::string file = "shape_predictor_68_face_landmarks.dat";
    std::string searched;
    for (const char* folder : {"/usr/share/dlib", "/usr/local/share/dlib"}) {
        const std::filesystem::path plain = std::filesystem::path(folder) / file;
        if (std::filesystem::exists(plain)) return plain;
        const std::filesystem::path packed = plain.string() + ".bz2";
        if (std::filesystem::exists(packed)) return detail::unpack_bz2_to_cache(packed);
        searched += (searched.empty() ? "" : ", ") + std::string(folder);
    }
    throw Error(facet::detail::concat(
        "dlib's landmark model ", file, "[.bz2] not found (searched ", searched,
        "; Debian: apt-get install libdlib-data, or set FACET_DLIB_LANDMARKS to the file)"));
}

/// dlib's HOG face detector with 68 landmarks per face. The score is the SVM's margin (larger is
/// surer, 0 at dlib's own threshold, the default; options.threshold moves it). The HOG window sees
/// faces of about 80 pixels, so a picture is enlarged until a face of options.min_face fills it.
class DlibFaceDetector : public FaceDetector {
  public:
    /// Loads the detector and (when `landmarks`) the landmark model, found with
    /// find_dlib_landmark_model unless `landmark_model` names the file.
    explicit DlibFaceDetector(DetectorOptions options = {}, bool landmarks = true,
                              std::string landmark_model = "")
        : options_(options), detector_(dlib::get_frontal_face_detector()) {
        check(options.min_face > 0, "DlibFaceDetector: min_face must be positive");
        if (!std::isnan(options.threshold)) threshold_ = options.threshold;
        if (!landmarks) return;
        if (landmark_model.empty()) landmark_model = find_dlib_landmark_model().string();
        try {
            dlib::deserialize(landmark_model) >> predictor_;
        } catch (const std::exception& e) {
            throw Error(facet::detail::concat("cannot read dlib's landmark model ", landmark_model,
                                              ": ", e.what()));
        }
        has_landmarks_ = true;
    }

    std::string name() const override { return "dlib"; }

    std::vector<DetectedFace> detect(const GrayView& image) override {
        check(image.pixels != nullptr && image.width > 0 && image.height > 0 &&
                  image.stride >= static_cast<std::size_t>(image.width),
              "DlibFaceDetector::detect: empty or malformed image view");
        dlib::array2d<unsigned char> work(image.height, image.width);
        for (int y = 0; y < image.height; ++y)
            std::copy_n(image.pixels + static_cast<std::size_t>(y) * image.stride, image.width,
                        &work[y][0]);
        // One resampling to the scale where the smallest face wanted fills the HOG window:
        // shrunk for downscale_to, enlarged when a face of min_face would be smaller than it.
        double scale = 1;
        const int longer = std::max(image.width, image.height);
        if (options_.downscale_to > 0 && longer > options_.downscale_to)
            scale = options_.downscale_to / longer;
        const double smallest_box = options_.min_face * box_per_face * scale;
        if (smallest_box < window) scale *= std::min(window / smallest_box, max_enlargement);
        if (scale != 1) {
            dlib::array2d<unsigned char> resized(std::max(1L, std::lround(image.height * scale)),
                                                 std::max(1L, std::lround(image.width * scale)));
            dlib::resize_image(work, resized, dlib::interpolate_bilinear());
            dlib::swap(work, resized);
        }
        const double sx = double(work.nc()) / image.width, sy = double(work.nr()) / image.height;
        std::vector<dlib::rect_detection> found;
        detector_(work, found, threshold_);
        // Maps a point of the work picture back to the given one (pixel centres sit at
        // (x + 0.5) / scale - 0.5).
        auto back = [&](dlib::dpoint p) {
            return Point{static_cast<float>((p.x() + 0.5) / sx - 0.5),
                         static_cast<float>((p.y() + 0.5) / sy - 0.5)};
        };
        std::vector<DetectedFace> faces;
        for (const dlib::rect_detection& d : found) {
            DetectedFace f;
            const Point tl = back(dlib::dpoint(d.rect.left(), d.rect.top()));
            const Point br = back(dlib::dpoint(d.rect.right() + 1, d.rect.bottom() + 1));
            f.box = {static_cast<int>(std::lround(tl.x)), static_cast<int>(std::lround(tl.y)),
                     static_cast<int>(std::lround(br.x - tl.x)),
                     static_cast<int>(std::lround(br.y - tl.y))};
            f.score = static_cast<float>(d.detection_confidence);
            if (has_landmarks_) {
                const dlib::full_object_detection shape = predictor_(work, d.rect);
                for (unsigned long k = 0; k < shape.num_parts(); ++k)
                    f.landmarks.push_back(back(dlib::dpoint(shape.part(k))));
            }
            faces.push_back(std::move(f));
        }
        std::stable_sort(
            faces.begin(), faces.end(),
            [](const DetectedFace& a, const DetectedFace& b) { return a.score > b.score; });
        return faces;
    }

  private:
    static constexpr double window = 80;  ///< the face size dlib's HOG detector was trained on
    /// dlib's box side per face side (min_face): its box is tighter than the Haar cascade's.
    static constexpr double box_per_face = 0.8;
    /// The most a picture is enlarged (a 640 x 480 frame to 2048 x 1536 at most).
    static constexpr double max_enlargement = 3.2;
    /// dlib's own threshold. -0.5 found more faces on composed validation scenes, but lost
    /// precision on the test scenes and found three false faces in a real portrait
    /// (docs/faces.md); DetectorOptions::threshold lowers it.
    double threshold_ = 0;
    DetectorOptions options_;
    dlib::frontal_face_detector detector_;
    dlib::shape_predictor predictor_;
    bool has_landmarks_ = false;
};

}  // namespace facet::vision
