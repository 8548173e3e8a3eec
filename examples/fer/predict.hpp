// fer/predict.hpp — `fer predict IMAGE|FOLDER...`: finds the faces in photos
// (vision/detectors.hpp), cuts each into a 48 x 48 crop framed like FER-2013's (face_crop.hpp),
// runs the network on all of them in batches, and prints each face's box and emotion probabilities
// (text or JSON); with
// --annotate, writes each picture with its boxes and labels drawn. --no-detect takes each whole
// picture as one face (pre-cropped faces). Pictures over 100 megapixels are refused from their
// header, before any pixel is decoded.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <facet/core/atomic_file.hpp>
#include <facet/data/image.hpp>
#include <facet/data/image_folder.hpp>
#include <facet/vision/detectors.hpp>

#if defined(FACET_HAVE_OPENCV)
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#include "cli.hpp"
#include "corrections.hpp"
#include "detector_cli.hpp"
#include "evaluate.hpp"
#include "face_crop.hpp"
#include "face_verifier.hpp"

namespace fer {

/// The largest picture fer predict decodes, in pixels.
inline constexpr std::size_t max_predict_pixels = 100'000'000;

inline Cli predict_cli() {
    const std::string detectors = [] {
        std::string all;
        for (const std::string& n : vision::available_face_detectors())
            all += (all.empty() ? "" : "|") + n;
        return all.empty() ? std::string("none built in") : all;
    }();
    Cli cli("predict",
            "Finds the faces in photos and prints each face's box and emotion probabilities.");
    cli.option("model", "FILE", model_option_help())
        .option("detector", "NAME", "face detector: " + detectors,
                vision::default_face_detector().empty() ? "none" : vision::default_face_detector())
        .option("min-face", "PX", "smallest face looked for, in pixels", "40")
        .option("max-side", "PX",
                "detect on a copy shrunk to at most this many pixels per side (0: full size)", "0")
        .option("annotate", "DIR", "write each picture with boxes and labels drawn into DIR")
        .option("save-faces", "DIR",
                "save each face's 48 x 48 crop as DIR/<predicted emotion>/<picture>_<n>.png "
                "(n: the face's number in the picture), for filing corrections (fer correct)")
        .option("framing", "box|eyes",
                "how each face is cut out for the network: by the detector's box, or upright and "
                "framed by the eyes when the detector gives landmarks (dlib)",
                "box")
        .option("batch", "N", "faces per network batch", "64")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("precision", "fp32|bf16",
                "bf16: the convolutions and dense layers multiply bf16-rounded operands and sum in "
                "fp32",
                "fp32")
        .flag("no-detect", "take each whole picture as one face (pictures already cropped)")
        .flag("json", "print a JSON array, one object per picture")
        .flag("skip-bad", "skip unreadable pictures (reported on stderr) instead of stopping")
        .positional("IMAGE|FOLDER", "PNG, JPEG, BMP, ... files, or folders of them");
    add_detector_threshold_option(cli);
    add_verifier_options(cli, "none");
    add_view_options(cli);
    return cli;
}

/// One face of one picture: where it is and what the network says.
struct FacePrediction {
    vision::Rect box;                  ///< in pixels of the picture
    std::vector<float> probabilities;  ///< per class
};

/// One picture's result.
struct PicturePrediction {
    std::string path;
    std::vector<FacePrediction> faces;
};

/// The files named on the command line: each file as given, each folder's image files (sorted,
/// not recursive).
inline std::vector<std::string> expand_image_arguments(const std::vector<std::string>& args) {
    std::vector<std::string> files;
    for (const std::string& arg : args) {
        if (fs::is_directory(arg)) {
            for (const fs::path& p : facet::detail::sorted_entries(arg, false))
                if (facet::detail::has_image_extension(p)) files.push_back(p.string());
        } else {
            files.push_back(arg);
        }
    }
    return files;
}

/// The limits fer predict decodes with: up to 100 megapixels, checked from the header.
inline facet::ImageLimits predict_limits() {
    facet::ImageLimits limits;
    limits.max_file_bytes = std::size_t{1} << 30;
    limits.max_side = std::size_t{1} << 20;
    limits.max_pixels = max_predict_pixels;
    return limits;
}

/// The index of the most probable class of a face.
inline std::size_t top_class(const FacePrediction& f) {
    return static_cast<std::size_t>(
        std::max_element(f.probabilities.begin(), f.probabilities.end()) - f.probabilities.begin());
}

/// The label drawn above a face: the top emotion and its probability.
inline std::string face_label(const FacePrediction& f, const std::vector<std::string>& classes) {
    const std::size_t top = top_class(f);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s %.0f%%", classes[top].c_str(), 100.0 * f.probabilities[top]);
    return buf;
}

/// Writes `path`'s picture with its faces' boxes and labels drawn into `folder` (same file name;
/// written to a temporary name, then renamed). With OpenCV the picture keeps its colours and the
/// labels are written; without, a gray PNG with the boxes only.
inline void write_annotated(const PicturePrediction& picture, const facet::GrayImage& gray,
                            const std::vector<std::string>& classes, const fs::path& folder) {
    fs::create_directories(folder);
    const int thickness = std::max(2, static_cast<int>(std::max(gray.width, gray.height) / 400));
#if defined(FACET_HAVE_OPENCV)
    const std::string bytes =
        facet::read_file_contents(picture.path, predict_limits().max_file_bytes);
    // Ignore EXIF orientation: the boxes are in the stored pixels' frame, as stb decoded them.
    cv::Mat image = cv::imdecode(
        cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data())),
        cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    if (image.empty() || image.cols != static_cast<int>(gray.width) ||
        image.rows != static_cast<int>(gray.height)) {
        cv::Mat g(static_cast<int>(gray.height), static_cast<int>(gray.width), CV_8UC1,
                  const_cast<std::uint8_t*>(gray.pixels.data()));
        cv::cvtColor(g, image, cv::COLOR_GRAY2BGR);
    }
    for (const FacePrediction& f : picture.faces) {
        const cv::Rect r(f.box.x, f.box.y, f.box.width, f.box.height);
        cv::rectangle(image, r, cv::Scalar(0, 255, 0), thickness);
        const double font = std::clamp(f.box.width / 160.0, 0.4, 4.0);
        const std::string label = face_label(f, classes);
        int baseline = 0;
        const cv::Size size =
            cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, font, thickness, &baseline);
        const int ty = f.box.y >= size.height + baseline + thickness
                           ? f.box.y - baseline - thickness
                           : f.box.y + f.box.height + size.height;
        cv::rectangle(image, cv::Point(f.box.x, ty - size.height - thickness),
                      cv::Point(f.box.x + size.width, ty + baseline), cv::Scalar(0, 255, 0),
                      cv::FILLED);
        cv::putText(image, label, cv::Point(f.box.x, ty), cv::FONT_HERSHEY_SIMPLEX, font,
                    cv::Scalar(0, 0, 0), std::max(1, thickness / 2), cv::LINE_AA);
    }
    std::string ext = fs::path(picture.path).extension().string();
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext != ".jpg" && ext != ".jpeg" && ext != ".png" && ext != ".bmp") ext = ".png";
    std::vector<std::uint8_t> encoded;
    facet::check(cv::imencode(ext, image, encoded), picture.path,
                 ": cannot encode the annotated picture");
    const fs::path out = folder / (fs::path(picture.path).stem().string() + ext);
    facet::write_file_atomically(out, encoded.data(), encoded.size());
#else
    static_cast<void>(classes);  // the labels need OpenCV's fonts; the boxes alone are drawn
    facet::GrayImage image = gray;
    for (const FacePrediction& f : picture.faces)
        for (int t = 0; t < thickness; ++t)
            for (int y = f.box.y + t; y < f.box.y + f.box.height - t; ++y)
                for (int x = f.box.x + t; x < f.box.x + f.box.width - t; ++x) {
                    const bool edge = y == f.box.y + t || y == f.box.y + f.box.height - t - 1 ||
                                      x == f.box.x + t || x == f.box.x + f.box.width - t - 1;
                    if (edge && x >= 0 && y >= 0 && x < int(image.width) && y < int(image.height))
                        image.pixels[std::size_t(y) * image.width + std::size_t(x)] = 255;
                }
    facet::write_png(folder / (fs::path(picture.path).stem().string() + ".png"),
                     image.pixels.data(), image.width, image.height);
#endif
}

/// Runs fer predict; see predict_cli(). Exit status 0 unless a picture cannot be read (and
/// --skip-bad was not given: then it is reported and skipped).
inline int run_predict(const Cli& cli) {
    facet::check(!cli.positionals().empty(),
                 "predict: give at least one image file or folder (see --help)");
    facet::set_num_threads(static_cast<int>(cli.integer("threads")));
    const facet::Precision precision = parse_precision(cli.str("precision"), "predict");
    facet::set_precision(precision);
    std::cerr << bf16_speed_note(precision);
    const long long batch = cli.integer("batch"), min_face = cli.integer("min-face"),
                    max_side = cli.integer("max-side");
    facet::check(batch > 0, "predict: --batch must be positive");
    facet::check(min_face > 0, "predict: --min-face must be positive");
    facet::check(max_side >= 0, "predict: --max-side must be 0 or positive");
    const bool detect = !cli.has("no-detect"), skip_bad = cli.has("skip-bad");
    const std::string framing_name = cli.str("framing");
    facet::check(framing_name == "box" || framing_name == "eyes",
                 "predict: --framing must be box or eyes, got '", framing_name, "'");
    const CropFraming framing = framing_name == "eyes" ? CropFraming::eyes : CropFraming::box;
    const TestViews views = views_from_cli(cli, fer::fer_image_side, "predict");
    const std::vector<std::string> files = expand_image_arguments(cli.positionals());
    TrainedModel t = load_trained(model_to_use(cli, "predict"));

    // Made at the first picture that decodes, so a bad file is reported as such first.
    std::unique_ptr<vision::FaceDetector> detector;
    std::string detector_name;
    auto make_detector = [&] {
        vision::DetectorOptions options;
        options.min_face = static_cast<int>(min_face);
        options.downscale_to = static_cast<double>(max_side);
        apply_detector_threshold(cli, options);
        detector = make_cli_detector(cli, cli.str("detector"), options);
        detector_name = detector->name();
    };

    // Pass 1: decode, detect and crop every picture; only the crops are kept.
    std::vector<PicturePrediction> pictures;
    std::vector<std::uint8_t> crops;
    std::size_t skipped = 0;
    for (const std::string& path : files) {
        facet::GrayImage image;
        try {
            image = facet::load_image(path, predict_limits());
        } catch (const facet::Error& e) {
            if (!skip_bad) throw;
            std::cerr << "fer predict: skipped " << e.what() << "\n";
            ++skipped;
            continue;
        }
        PicturePrediction p{path, {}};
        const vision::GrayView view = vision::gray_view(
            image.pixels.data(), static_cast<int>(image.width), static_cast<int>(image.height));
        if (detect) {
            if (!detector) make_detector();
            for (const vision::DetectedFace& f : detector->detect(view)) {
                const std::vector<std::uint8_t> crop =
                    fer_face_crop(view, f, detector_name, framing);
                crops.insert(crops.end(), crop.begin(), crop.end());
                p.faces.push_back({f.box, {}});
            }
        } else {
            const std::size_t side = std::min(image.width, image.height);
            const std::vector<std::uint8_t> crop =
                facet::to_square_gray(image, fer::fer_image_side);
            crops.insert(crops.end(), crop.begin(), crop.end());
            p.faces.push_back({{static_cast<int>((image.width - side) / 2),
                                static_cast<int>((image.height - side) / 2), static_cast<int>(side),
                                static_cast<int>(side)},
                               {}});
        }
        pictures.push_back(std::move(p));
    }

    // Pass 2: every face of every picture through the network, `batch` at a time.
    const std::size_t pixels = fer::fer_image_pixels, total = crops.size() / pixels;
    std::vector<float> probabilities;
    if (views.flip || views.crop > 0) {  // test-time views: each face's average over them
        if (total > 0)
            probabilities =
                predict_views(t.model, crops.data(), total, fer::fer_image_side,
                              fer::fer_image_side, t.norm, views, static_cast<std::size_t>(batch));
    } else {
        facet::Tensor<float> x;
        for (std::size_t begin = 0; begin < total; begin += static_cast<std::size_t>(batch)) {
            const std::size_t count =
                std::min<std::size_t>(static_cast<std::size_t>(batch), total - begin);
            x.resize(facet::Shape{count, 1, fer::fer_image_side, fer::fer_image_side});
            t.norm.apply(crops.data() + begin * pixels, x.data(), count * pixels);
            const facet::Tensor<float>& p = t.model.predict(x);
            probabilities.insert(probabilities.end(), p.begin(), p.end());
        }
    }
    const std::size_t classes = t.classes.size();
    std::size_t next = 0;
    for (PicturePrediction& p : pictures)
        for (FacePrediction& f : p.faces) {
            f.probabilities.assign(probabilities.begin() + std::ptrdiff_t(next * classes),
                                   probabilities.begin() + std::ptrdiff_t((next + 1) * classes));
            ++next;
        }

    if (cli.has("save-faces")) {
        std::size_t face = 0;
        for (const PicturePrediction& p : pictures)
            for (std::size_t n = 0; n < p.faces.size(); ++n, ++face)
                save_face_crop(cli.str("save-faces"), t.classes[top_class(p.faces[n])],
                               fs::path(p.path).stem().string(), n, crops.data() + face * pixels);
    }
    if (cli.has("annotate"))
        for (const PicturePrediction& p : pictures)
            write_annotated(p, facet::load_image(p.path, predict_limits()), t.classes,
                            cli.str("annotate"));

    if (cli.has("json")) {
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        for (const PicturePrediction& p : pictures) {
            nlohmann::ordered_json faces = nlohmann::ordered_json::array();
            for (const FacePrediction& f : p.faces) {
                nlohmann::ordered_json probs = nlohmann::ordered_json::object();
                for (std::size_t c = 0; c < classes; ++c) probs[t.classes[c]] = f.probabilities[c];
                faces.push_back(
                    {{"box", {f.box.x, f.box.y, f.box.width, f.box.height}},
                     {"emotion",
                      face_label(f, t.classes).substr(0, face_label(f, t.classes).rfind(' '))},
                     {"probabilities", probs}});
            }
            out.push_back({{"image", p.path}, {"faces", faces}});
        }
        std::cout << out.dump() << "\n";
    } else {
        for (const PicturePrediction& p : pictures) {
            if (p.faces.empty()) {
                std::cout << p.path << ": no face found\n";
                continue;
            }
            std::cout << p.path << ": " << p.faces.size()
                      << (p.faces.size() == 1 ? " face\n" : " faces\n");
            for (const FacePrediction& f : p.faces) {
                std::cout << "  [" << f.box.x << ", " << f.box.y << ", " << f.box.width << ", "
                          << f.box.height << "] " << face_label(f, t.classes) << "  (";
                for (std::size_t c = 0; c < classes; ++c) {
                    char buf[64];
                    std::snprintf(buf, sizeof buf, "%s%s %.1f%%", c ? ", " : "",
                                  t.classes[c].c_str(), 100.0 * f.probabilities[c]);
                    std::cout << buf;
                }
                std::cout << ")\n";
            }
        }
        if (skipped) std::cout << skipped << " unreadable picture(s) skipped\n";
    }
    return 0;
}

}  // namespace fer
