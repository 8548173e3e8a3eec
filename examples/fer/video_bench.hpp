// fer/video_bench.hpp — test videos with known faces, and `fer video-bench`: frames per second of
// the `fer video` pipeline on 640 x 480 video with 1, 3 and 5 faces, at 1 and 2 threads, split
// into decode, detection, alignment, classification and drawing. The video is generated: 48 x 48
// faces (FER-2013 images when the data are there, else the synthetic faces) enlarged and pasted
// on a textured background, each drifting slowly.
// Read next: tests/test_video.cpp.
#pragma once

#include <cstdio>
#include <iostream>

#include <facet/core/random.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "model_zoo.hpp"
#include "video.hpp"

namespace fer {

/// What make_test_video draws.
struct TestVideoSpec {
    int width = 640, height = 480, frames = 60, face_side = 96;
    double fps = 30;
    std::uint64_t seed = 1;
};

/// Writes a video (the container and codec follow the extension: .avi is MJPG, else MPEG-4) of
/// `faces` (48 x 48 gray each) pasted at face_side pixels on a smooth textured background, each
/// drifting by about a pixel per frame, none overlapping. Returns each frame's true boxes, in
/// the order of `faces`.
inline std::vector<std::vector<facet::vision::Rect>> make_test_video(
    const std::string& path, const std::vector<cv::Mat>& faces, const TestVideoSpec& spec) {
    const int n = static_cast<int>(faces.size()), side = spec.face_side;
    const int per_row = n <= 3 ? n : 3, rows = n <= 3 ? 1 : 2;
    facet::check(n > 0 && n <= 6 && side * per_row <= spec.width && side * rows <= spec.height,
                 "make_test_video: ", n, " faces of ", side, " px do not fit ", spec.width, "x",
                 spec.height);
    // The background: a gradient with a few soft blobs and mild noise (a plain frame would make
    // detection unrealistically cheap).
    facet::Rng rng(spec.seed);
    cv::Mat background(spec.height, spec.width, CV_8U);
    for (int y = 0; y < spec.height; ++y)
        for (int x = 0; x < spec.width; ++x)
            background.at<std::uint8_t>(y, x) =
                static_cast<std::uint8_t>(60 + 80 * x / spec.width + 40 * y / spec.height);
    for (int b = 0; b < 12; ++b)
        cv::circle(background,
                   cv::Point(static_cast<int>(rng.below(static_cast<std::uint64_t>(spec.width))),
                             static_cast<int>(rng.below(static_cast<std::uint64_t>(spec.height)))),
                   20 + static_cast<int>(rng.below(60)), cv::Scalar(40 + rng.below(170)),
                   cv::FILLED, cv::LINE_AA);
    cv::GaussianBlur(background, background, cv::Size(0, 0), 6);
    cv::Mat noise(background.size(), CV_8U);
    cv::randn(noise, 0, 4);
    background += noise;

    // Faces on one row, or two (three on the first), spaced evenly; each drifts on its own slow
    // loop within its cell.
    std::vector<cv::Mat> big(faces.size());
    for (std::size_t i = 0; i < faces.size(); ++i)
        cv::resize(faces[i], big[i], cv::Size(side, side), 0, 0, cv::INTER_CUBIC);
    cv::VideoWriter writer;
    const bool avi = fs::path(path).extension() == ".avi";
    writer.open(path, cv::CAP_FFMPEG,
                avi ? cv::VideoWriter::fourcc('M', 'J', 'P', 'G')
                    : cv::VideoWriter::fourcc('m', 'p', '4', 'v'),
                spec.fps, cv::Size(spec.width, spec.height), true);
    facet::check(writer.isOpened(), "make_test_video: cannot write ", path);
    std::vector<std::vector<facet::vision::Rect>> truth;
    cv::Mat frame, colour;
    for (int f = 0; f < spec.frames; ++f) {
        background.copyTo(frame);
        std::vector<facet::vision::Rect> boxes;
        for (int i = 0; i < n; ++i) {
            const int row = i < per_row ? 0 : 1, in_row = row ? n - per_row : per_row,
                      col = row ? i - per_row : i;
            const int cell_w = spec.width / in_row, cell_h = spec.height / rows;
            const double phase = 0.05 * f + 1.7 * i;
            const int x = col * cell_w + (cell_w - side) / 2 +
                          static_cast<int>(std::lround((cell_w - side) / 3.0 * std::sin(phase)));
            const int y = row * cell_h + (cell_h - side) / 2 +
                          static_cast<int>(std::lround((cell_h - side) / 3.0 * std::cos(phase)));
            big[static_cast<std::size_t>(i)].copyTo(frame(cv::Rect(x, y, side, side)));
            boxes.push_back({x, y, side, side});
        }
        cv::cvtColor(frame, colour, cv::COLOR_GRAY2BGR);
        writer.write(colour);
        truth.push_back(std::move(boxes));
    }
    writer.release();
    return truth;
}

/// Up to `count` 48 x 48 faces from `data` (a FER-2013 folder or CSV; synthetic faces when empty)
/// that `detector` finds when pasted alone on a plain frame at `side` pixels, one per class in
/// turn, so a benchmark with N faces has N faces to track.
inline std::vector<cv::Mat> detectable_faces(const DataChoice& data, std::size_t count, int side,
                                             facet::vision::FaceDetector& detector) {
    facet::ReadOptions read;
    read.max_per_class = 40;
    const facet::DataSplits splits = load_splits(data, read);
    const facet::Dataset& d = splits.splits.back();
    std::vector<cv::Mat> chosen;
    cv::Mat canvas(side * 2, side * 2, CV_8U), big;
    for (std::size_t i = 0; i < d.size() && chosen.size() < count; ++i) {
        // Class by class: sample i of class (i mod 7) in the split's order.
        const cv::Mat face(static_cast<int>(d.height), static_cast<int>(d.width), CV_8U,
                           const_cast<std::uint8_t*>(d.image(i)));
        canvas.setTo(cv::Scalar(120));
        cv::resize(face, big, cv::Size(side, side), 0, 0, cv::INTER_CUBIC);
        big.copyTo(canvas(cv::Rect(side / 2, side / 2, side, side)));
        if (detector.detect({canvas.data, canvas.cols, canvas.rows, canvas.step[0]}).size() == 1)
            chosen.push_back(face.clone());
    }
    facet::check(chosen.size() == count, "video-bench: only ", chosen.size(), " of ", d.size(),
                 " faces of ", data.describe(), " are found by the detector; ", count, " needed");
    return chosen;
}

inline Cli video_bench_cli() {
    Cli cli("video-bench",
            "Frames per second of `fer video` on generated 640x480 video with 1, 3 and 5 faces at "
            "1 and 2 threads, split into decode, detection, alignment, classification and "
            "drawing (the annotated frame is drawn, not encoded).");
    cli.option("model", "FILE", "model file (default: an untrained fer-cnn-s, as fast)")
        .option("data", "DIR|CSV",
                "faces to paste: FER-2013 (default: data/fer2013, else synthetic faces)")
        .option("frames", "N", "frames per run", "300")
        .option("faces", "LIST", "face counts", "1,3,5")
        .option("threads", "LIST", "thread counts", "1,2")
        .option("detector", "NAME", "face detector back-end (opencv, opencv-lbp, dlib)", "opencv")
        .option("min-face", "N", "smallest face side found, in pixels", "48")
        .option("detect-size", "N", "as for fer video", "auto")
        .option("dir", "DIR", "where the generated videos go", "build/video-bench")
        .flag("json",
              "print one JSON object (the settings and a row per run) instead of the table");
    add_detector_threshold_option(cli);
    add_video_speed_options(cli);
    return cli;
}

inline std::vector<int> int_list(const std::string& text) {
    std::vector<int> v;
    std::size_t at = 0;
    while (at <= text.size()) {
        const std::size_t comma = std::min(text.find(',', at), text.size());
        v.push_back(std::stoi(text.substr(at, comma - at)));
        at = comma + 1;
    }
    return v;
}

inline int run_video_bench(const Cli& cli) {
    TrainedModel model =
        cli.has("model")
            ? load_trained(cli.str("model"))
            : TrainedModel{build_model("fer-cnn-s", 1), {}, fer::fer_class_name_list(), {}};
    model.model.set_mode(facet::Mode::Eval);
    const std::string dir = cli.str("dir"), name = cli.str("detector");
    fs::create_directories(dir);
    const DataChoice data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    const TestVideoSpec spec{640, 480, static_cast<int>(cli.integer("frames")), 96, 30, 1};
    const facet::vision::DetectorOptions options = video_detector_options(cli, 640, name);
    const int detect_every = detect_every_option(cli);
    const bool json = cli.has("json");
    nlohmann::ordered_json runs = nlohmann::ordered_json::array();
    if (!json) {
        std::printf(
            "fer video-bench: %dx%d, %d frames per run, faces of %d px from %s, detector %s "
            "at %s, scale step %s, detection on %s\n\n",
            spec.width, spec.height, spec.frames, spec.face_side, data.describe().c_str(),
            name.c_str(),
            options.downscale_to > 0
                ? (std::to_string(static_cast<int>(options.downscale_to)) + " px").c_str()
                : "full size",
            options.scale_step > 0 ? std::to_string(options.scale_step).substr(0, 4).c_str()
                                   : "default",
            detect_every == 1 ? "every frame"
                              : ("1 frame in " + std::to_string(detect_every)).c_str());
        // CPU ms/frame is the processor time of all threads: on a machine busy with other work the
        // wall-clock columns grow, this one much less.
        std::printf(
            "| faces | threads | frames/s | found/frame | decode ms | detection ms | "
            "alignment ms | classification ms | drawing ms | CPU ms/frame |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for (int faces : int_list(cli.str("faces"))) {
        std::unique_ptr<facet::vision::FaceDetector> picker =
            facet::vision::make_face_detector(name, options);
        const std::vector<cv::Mat> chosen =
            detectable_faces(data, static_cast<std::size_t>(faces), spec.face_side, *picker);
        const std::string path = dir + "/faces" + std::to_string(faces) + ".mp4";
        make_test_video(path, chosen, spec);
        for (int threads : int_list(cli.str("threads"))) {
            facet::set_num_threads(threads);
            cv::setNumThreads(threads);
            VideoConfig c;
            c.input = path;
            c.progress = false;
            c.draw = true;
            c.analysis.detect_every = detect_every;
            std::unique_ptr<facet::vision::FaceDetector> detector =
                facet::vision::make_face_detector(name, options);
            cv::VideoCapture cap = open_video_input(c);
            const VideoSummary s = process_video(c, cap, model, *detector);
            const StageTimes& t = s.times;
            const double ms = 1e3 / static_cast<double>(s.frames);
            const double fps = static_cast<double>(s.frames) / s.seconds,
                         found = static_cast<double>(t.faces) / static_cast<double>(s.frames);
            if (json) {
                runs.push_back({{"faces", faces},
                                {"threads", threads},
                                {"frames", s.frames},
                                {"frames_per_s", fps},
                                {"found_per_frame", found},
                                {"ms_per_frame",
                                 {{"decode", t.decode * ms},
                                  {"detection", t.detect * ms},
                                  {"alignment", t.align * ms},
                                  {"classification", t.classify * ms},
                                  {"drawing", t.draw * ms}}},
                                {"cpu_ms_per_frame", s.cpu_seconds * ms}});
                continue;
            }
            std::printf("| %d | %d | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                        faces, threads, fps, found, t.decode * ms, t.detect * ms, t.align * ms,
                        t.classify * ms, t.draw * ms, s.cpu_seconds * ms);
            std::fflush(stdout);
        }
    }
    if (json) {
        nlohmann::ordered_json out = {
            {"width", spec.width},
            {"height", spec.height},
            {"face_side", spec.face_side},
            {"faces_from", data.describe()},
            {"detector", name},
            {"detect_size", options.downscale_to > 0 ? nlohmann::ordered_json(options.downscale_to)
                                                     : nlohmann::ordered_json("full")},
            {"scale_step", options.scale_step},
            {"detect_every", detect_every},
            {"runs", runs}};
        std::cout << out.dump(2) << "\n";
    }
    return 0;
}

}  // namespace fer
