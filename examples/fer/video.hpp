// fer/video.hpp — `fer video INPUT` and `fer video --camera N`: the emotions of the faces in a
// video file or a webcam stream. Each frame is decoded, its faces detected (on a reduced copy
// when that loses no face the detector could find), followed across frames with stable ids
// (vision/tracker.hpp), cut out at FER-2013's framing and classified in one batch; the
// probabilities can be smoothed per face over time. Results go to a CSV file (one row per face
// per frame), an annotated video, and, for a camera with a display, a live window.
//
// Live input is never queued: a capture thread keeps only the newest frame, and the frames the
// pipeline had no time for are counted as dropped. Needs OpenCV (videoio, highgui, imgproc);
// main.cpp includes this header only when the build found it.
// Read next: fer/video_bench.hpp, which times the stages on generated video.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>

#include <unistd.h>
#include <facet/core/atomic_file.hpp>
#include <facet/vision/face_detector.hpp>
#include <facet/vision/tracker.hpp>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "corrections.hpp"
#include "detector_cli.hpp"
#include "evaluate.hpp"
#include "face_crop.hpp"
#include "face_verifier.hpp"
#include "train.hpp"
#include "video_detector.hpp"

namespace fer {

/// The CSV's probability columns, in the order the file format fixes (whatever the model's order).
inline constexpr std::array<std::string_view, 7> video_csv_emotions = {
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};

/// The CSV's first line.
inline std::string video_csv_header() {
    std::string h = "frame,time_s,face_id,x,y,w,h,emotion";
    for (std::string_view e : video_csv_emotions) h += ",p_" + std::string(e);
    return h;
}

/// One face in one frame: its track id, box, probabilities (model's class order, smoothed if
/// asked) and the most likely class.
struct VideoFace {
    int id = 0;
    facet::vision::Rect box;
    std::vector<float> probabilities;
    int emotion = 0;
};

/// Seconds spent in each stage, summed over the frames.
struct StageTimes {
    double decode = 0, detect = 0, align = 0, classify = 0, draw = 0;
    std::size_t frames = 0, faces = 0;
    double total() const { return decode + detect + align + classify + draw; }
};

/// How frames are analysed.
struct AnalyzerOptions {
    facet::vision::TrackerOptions tracking;
    double smooth = 0;  ///< EMA weight of the past: p = smooth * p_previous + (1 - smooth) * p_now
    /// Detect on every Nth frame; the frames between keep the last detection's boxes (and ids)
    /// and classify the faces inside them afresh.
    int detect_every = 1;
};

/// The per-frame work: detect, track, crop (framed like FER-2013 from the detector's box:
/// fer/face_crop.hpp), classify every face of the frame in one forward pass,
/// smooth per track.
class FrameAnalyzer {
  public:
    FrameAnalyzer(TrainedModel& model, facet::vision::FaceDetector& detector,
                  AnalyzerOptions options)
        : model_(model),
          detector_(detector),
          detector_name_(detector.name()),
          tracker_(options.tracking),
          options_(options) {
        facet::check(options.smooth >= 0 && options.smooth < 1,
                     "video: --smooth must be in [0, 1), got ", options.smooth);
        facet::check(options.detect_every >= 1, "video: --detect-every must be at least 1, got ",
                     options.detect_every);
    }

    /// Analyses one 8-bit gray frame, adding the time of each stage to `times`.
    const std::vector<VideoFace>& analyze(const cv::Mat& gray, StageTimes& times) {
        using clock = std::chrono::steady_clock;
        auto t0 = clock::now();
        const facet::vision::GrayView view{gray.data, gray.cols, gray.rows,
                                           static_cast<std::size_t>(gray.step[0])};
        if (frame_ % options_.detect_every == 0) {
            found_ = detector_.detect(view);
            boxes_.clear();
            for (const auto& f : found_) boxes_.push_back(f.box);
            ids_ = tracker_.update(boxes_);
        }
        ++frame_;
        const std::vector<facet::vision::DetectedFace>& found = found_;
        const std::vector<facet::vision::Rect>& boxes = boxes_;
        const std::vector<int>& ids = ids_;
        times.detect += seconds_since(t0);

        t0 = clock::now();
        const std::size_t side = fer::fer_image_side, pixels = side * side, n = boxes.size();
        faces_.resize(n);
        if (n) batch_.resize(facet::Shape{n, 1, side, side});
        crops_.resize(n * pixels);
        for (std::size_t i = 0; i < n; ++i) {
            const std::vector<std::uint8_t> crop = fer_face_crop(view, found[i], detector_name_);
            std::copy(crop.begin(), crop.end(), crops_.begin() + std::ptrdiff_t(i * pixels));
            model_.norm.apply(crop.data(), batch_.data() + i * pixels, pixels);
        }
        times.align += seconds_since(t0);

        t0 = clock::now();
        if (n) {
            const facet::Tensor<float>& p = model_.model.predict(batch_);
            const std::size_t classes = p.dim(1);
            for (std::size_t i = 0; i < n; ++i) {
                VideoFace& face = faces_[i];
                face.id = ids[i], face.box = boxes[i];
                face.probabilities.assign(p.data() + i * classes, p.data() + (i + 1) * classes);
                smooth(face);
                face.emotion = static_cast<int>(
                    std::max_element(face.probabilities.begin(), face.probabilities.end()) -
                    face.probabilities.begin());
            }
        }
        // Forget the smoothing state of retired tracks (their ids never come back).
        std::erase_if(smoothed_, [&](const auto& kv) { return !tracker_.alive(kv.first); });
        times.classify += seconds_since(t0);
        times.faces += n;
        return faces_;
    }

    /// The 48 x 48 crops of the last analyze(), face after face (as its faces are ordered).
    const std::vector<std::uint8_t>& crops() const { return crops_; }

  private:
    /// Exponential moving average per track; a new track starts from its first prediction.
    void smooth(VideoFace& face) {
        if (options_.smooth <= 0) return;
        auto [it, fresh] = smoothed_.try_emplace(face.id, face.probabilities);
        if (fresh) return;
        const float a = static_cast<float>(options_.smooth);
        for (std::size_t c = 0; c < face.probabilities.size(); ++c)
            it->second[c] = a * it->second[c] + (1 - a) * face.probabilities[c];
        face.probabilities = it->second;
    }

    TrainedModel& model_;
    facet::vision::FaceDetector& detector_;
    std::string detector_name_;  // picks the crop's framing (fer/face_crop.hpp)
    facet::vision::IouTracker tracker_;
    AnalyzerOptions options_;
    long frame_ = 0;  // frames analysed so far
    // The last detection's faces, boxes and track ids (kept for --detect-every's frames between).
    std::vector<facet::vision::DetectedFace> found_;
    std::vector<facet::vision::Rect> boxes_;
    std::vector<int> ids_;
    std::map<int, std::vector<float>> smoothed_;
    std::vector<VideoFace> faces_;
    std::vector<std::uint8_t> crops_;
    facet::Tensor<float> batch_;
};

/// Boxes, "id N emotion P%" labels and, if `fps` > 0, the frame rate, drawn on a BGR frame.
inline void draw_faces(cv::Mat& frame, const std::vector<VideoFace>& faces,
                       const std::vector<std::string>& classes, double fps) {
    for (const VideoFace& f : faces) {
        const cv::Rect r(f.box.x, f.box.y, f.box.width, f.box.height);
        // A colour per id, so a face keeps its colour while it moves.
        const cv::Scalar colour(60 + (f.id * 97) % 196, 60 + (f.id * 57) % 196,
                                60 + (f.id * 151) % 196);
        cv::rectangle(frame, r, colour, 2);
        char label[96];
        std::snprintf(label, sizeof label, "%d %s %.0f%%", f.id,
                      classes[static_cast<std::size_t>(f.emotion)].c_str(),
                      100.0 * f.probabilities[static_cast<std::size_t>(f.emotion)]);
        int baseline = 0;
        const cv::Size text = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.5, 1, &baseline);
        const cv::Point at(r.x, std::max(text.height + 4, r.y - 4));
        cv::rectangle(frame, at + cv::Point(0, baseline),
                      at + cv::Point(text.width, -text.height - 2), colour, cv::FILLED);
        cv::putText(frame, label, at, cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 0, 0), 1,
                    cv::LINE_AA);
    }
    if (fps > 0) {
        char text[32];
        std::snprintf(text, sizeof text, "%.1f fps", fps);
        cv::putText(frame, text, cv::Point(8, frame.rows - 10), cv::FONT_HERSHEY_SIMPLEX, 0.6,
                    cv::Scalar(0, 255, 0), 2, cv::LINE_AA);
    }
}

/// The CSV rows of one frame, appended to `csv`. `classes` are the model's class names; the
/// columns follow video_csv_emotions.
inline void append_csv_rows(std::string& csv, long frame, double time_s,
                            const std::vector<VideoFace>& faces,
                            const std::vector<std::string>& classes) {
    std::vector<std::size_t> column(video_csv_emotions.size());
    for (std::size_t k = 0; k < column.size(); ++k) {
        const auto it = std::find(classes.begin(), classes.end(), video_csv_emotions[k]);
        facet::check(it != classes.end(), "video: the model has no class '", video_csv_emotions[k],
                     "' for the CSV column p_", video_csv_emotions[k]);
        column[k] = static_cast<std::size_t>(it - classes.begin());
    }
    char buf[96];
    for (const VideoFace& f : faces) {
        std::snprintf(buf, sizeof buf, "%ld,%.3f,%d,%d,%d,%d,%d,", frame, time_s, f.id, f.box.x,
                      f.box.y, f.box.width, f.box.height);
        csv += buf;
        csv += classes[static_cast<std::size_t>(f.emotion)];
        for (std::size_t c : column) {
            std::snprintf(buf, sizeof buf, ",%.6f", f.probabilities[c]);
            csv += buf;
        }
        csv += '\n';
    }
}

/// The newest frame of a live source, handed from the capture thread to the pipeline. Holds one
/// frame: a frame that arrives before the last one was taken replaces it and counts as dropped.
class LatestFrame {
  public:
    /// Capture side: offers a frame (swapped in; `frame` gets an old buffer back to reuse).
    void put(cv::Mat& frame) {
        {
            std::lock_guard lock(mutex_);
            if (fresh_) ++dropped_;
            cv::swap(frame_, frame);
            fresh_ = true, ++index_;
        }
        ready_.notify_one();
    }
    /// Capture side: no more frames will come.
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        ready_.notify_one();
    }
    /// Pipeline side: waits for a frame newer than the last one taken; false once closed and
    /// drained. `index` is the frame's number in the capture order (gaps are dropped frames).
    bool take(cv::Mat& frame, long& index) {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return fresh_ || closed_; });
        if (!fresh_) return false;
        cv::swap(frame_, frame);
        fresh_ = false, index = index_ - 1;
        return true;
    }
    /// Frames replaced before the pipeline took them.
    long dropped() const {
        std::lock_guard lock(mutex_);
        return dropped_;
    }

  private:
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    cv::Mat frame_;
    bool fresh_ = false, closed_ = false;
    long index_ = 0, dropped_ = 0;
};

/// Everything `fer video` needs besides the model and the detector.
struct VideoConfig {
    std::string input;         ///< a video file, or empty with camera >= 0
    int camera = -1;           ///< V4L2 device number, or -1
    bool live = false;         ///< read as a live source even if it is a file (a camera always is)
    std::string csv, output;   ///< where to write (empty: not written)
    std::string save_faces;    ///< folder for each face's crop, by predicted emotion (empty: none)
    AnalyzerOptions analysis;  ///< tracking and smoothing
    long max_frames = 0;       ///< stop after this many frames (0: until the input ends)
    bool window = false;       ///< show a live window
    bool progress = true;      ///< a progress bar for files (on stderr)
    bool draw = false;         ///< draw the annotations even if nothing shows or keeps them
};

/// What a run did.
struct VideoSummary {
    long frames = 0;   ///< frames analysed
    long dropped = 0;  ///< live frames the pipeline had no time for
    double seconds = 0;
    double cpu_seconds = 0;  ///< processor time of all threads (the load of other programs aside)
    StageTimes times;
};

/// Opens the input: a file (its absence or an undecodable content named in a facet::Error) or a
/// V4L2 camera.
inline cv::VideoCapture open_video_input(const VideoConfig& c) {
    // OpenCV and FFmpeg log their own messages for an input they cannot open ("moov atom not
    // found"); the error below says it in one line. FFmpeg's level is read once, when OpenCV
    // first loads it; a level the user set is kept.
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
    ::setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0);  // AV_LOG_QUIET
    cv::VideoCapture cap;
    if (c.camera >= 0) {
        cap.open(c.camera, cv::CAP_V4L2);
        facet::check(cap.isOpened(), "video: cannot open camera ", c.camera, " (/dev/video",
                     c.camera, ": no such device, busy, or no permission)");
        return cap;
    }
    facet::check(fs::exists(c.input), "video: no such file: ", c.input);
    facet::check(!fs::is_directory(c.input), "video: ", c.input, " is a folder, not a video");
    cap.open(c.input, cv::CAP_FFMPEG);
    facet::check(cap.isOpened(), "video: cannot read ", c.input,
                 ": not a video format OpenCV/FFmpeg can decode (corrupt or truncated?)");
    return cap;
}

/// A VideoWriter that writes to a temporary name beside `path` (same extension, so the same
/// container) and renames it over `path` in commit(); an unfinished file is removed.
class PendingVideo {
  public:
    PendingVideo(const std::string& path, double fps, cv::Size size) : path_(path) {
        const fs::path p(path);
        const std::string ext = p.extension().string();
        temp_ = (p.parent_path() /
                 ("." + p.stem().string() + ".tmp." + std::to_string(::getpid()) + ext))
                    .string();
        const int fourcc = ext == ".avi" ? cv::VideoWriter::fourcc('M', 'J', 'P', 'G')
                                         : cv::VideoWriter::fourcc('m', 'p', '4', 'v');
        writer_.open(temp_, cv::CAP_FFMPEG, fourcc, fps > 0 ? fps : 30.0, size, true);
        facet::check(writer_.isOpened(), "video: cannot write ", path,
                     " (unknown container, or no permission; .mp4 and .avi work)");
    }
    ~PendingVideo() {
        if (committed_) return;
        writer_.release();
        std::error_code ec;
        fs::remove(temp_, ec);
    }
    PendingVideo(const PendingVideo&) = delete;
    PendingVideo& operator=(const PendingVideo&) = delete;

    void write(const cv::Mat& frame) { writer_.write(frame); }
    /// Finishes the file and moves it to its name.
    void commit() {
        writer_.release();
        std::error_code ec;
        fs::rename(temp_, path_, ec);
        facet::check(!ec, "video: cannot write ", path_, ": ", ec.message());
        committed_ = true;
    }

  private:
    std::string path_, temp_;
    cv::VideoWriter writer_;
    bool committed_ = false;
};

/// A progress line on stderr, "frame 120/900 [====>....] 31.2 fps ETA 0:25", redrawn in place
/// on a terminal, printed every 10 % otherwise.
class VideoProgress {
  public:
    explicit VideoProgress(long total) : total_(total), tty_(isatty(STDERR_FILENO) != 0) {}
    void update(long done, double elapsed, bool final = false) {
        const long decile = total_ > 0 ? done * 10 / total_ : -1;
        if (!final && (tty_ ? done % 5 != 0 : decile == last_decile_ || decile < 0)) return;
        last_decile_ = decile;
        const double fps = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
        std::string bar;
        if (total_ > 0) {
            const long width = 30, filled = std::min(width, width * done / total_);
            bar = " [" + std::string(static_cast<std::size_t>(filled), '=') +
                  std::string(static_cast<std::size_t>(width - filled), '.') + "]";
        }
        char line[160];
        const long eta = fps > 0 && total_ > done ? std::lround((total_ - done) / fps) : 0;
        std::snprintf(line, sizeof line, "frame %ld%s%s %.1f fps%s", done,
                      total_ > 0 ? ("/" + std::to_string(total_)).c_str() : "", bar.c_str(), fps,
                      final ? ""
                            : (" ETA " + std::to_string(eta / 60) + ":" +
                               (eta % 60 < 10 ? "0" : "") + std::to_string(eta % 60))
                                  .c_str());
        std::cerr << (tty_ ? "\r" : "") << line << (tty_ && !final ? "" : "\n") << std::flush;
    }

  private:
    long total_;
    bool tty_;
    long last_decile_ = -2;
};

/// Runs the whole pipeline on `cap` (opened from `config` by open_video_input) with the given
/// model and detector.
inline VideoSummary process_video(const VideoConfig& config, cv::VideoCapture& cap,
                                  TrainedModel& model, facet::vision::FaceDetector& detector) {
    using clock = std::chrono::steady_clock;
    const bool live = config.live || config.camera >= 0;
    const double fps = cap.get(cv::CAP_PROP_FPS);
    const long total = live ? 0 : static_cast<long>(cap.get(cv::CAP_PROP_FRAME_COUNT));
    const std::string source =
        live ? "camera " + std::to_string(config.camera) : std::string(config.input);

    FrameAnalyzer analyzer(model, detector, config.analysis);
    VideoSummary summary;
    StageTimes& times = summary.times;
    std::string csv = video_csv_header() + "\n";
    std::unique_ptr<PendingVideo> out;
    std::unique_ptr<VideoProgress> progress;
    if (!live && config.progress) progress = std::make_unique<VideoProgress>(total);
    const bool window = live && config.window;
    if (window) cv::namedWindow("fer video", cv::WINDOW_AUTOSIZE);

    // Live: a capture thread reads continuously and keeps only the newest frame.
    LatestFrame latest;
    std::atomic<bool> stop_capture{false};
    std::thread capture;
    if (live)
        capture = std::thread([&] {
            cv::Mat m;
            while (!stop_capture && cap.read(m)) latest.put(m);
            latest.close();
        });
    struct JoinCapture {
        std::atomic<bool>& stop;
        std::thread& thread;
        ~JoinCapture() {
            stop = true;
            if (thread.joinable()) thread.join();
        }
    } join_capture{stop_capture, capture};

    const facet::StopSignals signals;  // Ctrl-C ends the run with complete output files
    const auto start = clock::now();
    const std::clock_t cpu_start = std::clock();
    cv::Mat frame, gray;
    double shown_fps = 0;
    auto last = start;
    bool quit = false;  // q or Esc in the window
    for (long n = 0; config.max_frames <= 0 || n < config.max_frames; ++n) {
        if (facet::StopSignals::requested() || quit) break;
        auto t0 = clock::now();
        long index = n;
        double time_s = 0;
        if (live) {
            if (!latest.take(frame, index)) break;
            time_s = seconds_since(start);
        } else {
            if (!cap.read(frame)) {
                facet::check(n > 0, "video: ", source,
                             ": no frame could be decoded (corrupt or empty video)");
                break;
            }
            time_s = cap.get(cv::CAP_PROP_POS_MSEC) / 1000.0;
            if (!(time_s > 0) && fps > 0) time_s = static_cast<double>(n) / fps;
        }
        if (frame.channels() == 1)
            gray = frame;
        else
            cv::cvtColor(frame, gray,
                         frame.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
        times.decode += seconds_since(t0);

        const std::vector<VideoFace>& faces = analyzer.analyze(gray, times);
        if (!config.csv.empty()) append_csv_rows(csv, index, time_s, faces, model.classes);
        const std::string stem = live ? "camera" : fs::path(config.input).stem().string();
        for (std::size_t i = 0; !config.save_faces.empty() && i < faces.size(); ++i)
            save_face_crop(
                config.save_faces, model.classes[static_cast<std::size_t>(faces[i].emotion)],
                stem + "_f" + std::to_string(index) + "_id" + std::to_string(faces[i].id), 0,
                analyzer.crops().data() + i * fer::fer_image_pixels);

        t0 = clock::now();
        if (!config.output.empty() || window || config.draw) {
            if (frame.channels() != 3) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
            const double dt = seconds_since(last);
            last = clock::now();
            if (dt > 0) shown_fps = shown_fps > 0 ? 0.9 * shown_fps + 0.1 / dt : 1 / dt;
            draw_faces(frame, faces, model.classes, window ? shown_fps : 0);
            if (!config.output.empty()) {
                if (!out) out = std::make_unique<PendingVideo>(config.output, fps, frame.size());
                out->write(frame);
            }
            if (window) {
                cv::imshow("fer video", frame);
                const int key = cv::waitKey(1);
                quit = key == 'q' || key == 27;
            }
        }
        times.draw += seconds_since(t0);
        ++times.frames, ++summary.frames;
        if (progress) progress->update(summary.frames, seconds_since(start));
    }
    summary.seconds = seconds_since(start);
    summary.cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    stop_capture = true;
    if (capture.joinable()) capture.join();
    summary.dropped = latest.dropped();
    if (progress) progress->update(summary.frames, summary.seconds, true);
    if (window) cv::destroyAllWindows();
    facet::check(summary.frames > 0, "video: ", source, ": no frame was read");
    if (out) out->commit();
    if (!config.csv.empty()) facet::write_file_atomically(config.csv, csv.data(), csv.size());
    return summary;
}

/// The options that trade detection work for speed, shared by `fer video` and `fer video-bench`.
inline void add_video_speed_options(Cli& cli) {
    cli.option("scale-step", "X",
               "OpenCV detectors: ratio between the face sizes scanned, in (1, 2]; larger is "
               "faster and finds fewer faces (auto: OpenCV's 1.1)",
               "auto")
        .option("detect-every", "N",
                "detect faces on every Nth frame; the frames between keep the boxes (and ids) "
                "of the last detection and classify the faces in them afresh (1: every frame)",
                "2");
}

inline Cli video_cli() {
    Cli cli("video",
            "Detects, tracks and classifies the faces of a video file or a webcam (OpenCV/FFmpeg "
            "input). Ctrl-C (or q in the window) ends a run with complete output files.");
    cli.option("model", "FILE", model_option_help())
        .option("camera", "N", "read the V4L2 webcam /dev/videoN instead of a file")
        .option("csv", "FILE",
                "one row per face per frame: frame,time_s,face_id,x,y,w,h,emotion,p_angry,...,"
                "p_neutral")
        .option("output", "FILE", "the annotated video (.mp4 or .avi)")
        .option("save-faces", "DIR",
                "save each face's 48 x 48 crop of every frame as DIR/<predicted emotion>/"
                "<video>_f<frame>_id<face id>_0.png, for filing corrections (fer correct)")
        .option("smooth", "X",
                "smooth each face's probabilities over time: p = X * p_previous + (1 - X) * "
                "p_frame (0: off; 0.7 is steady at 30 fps)",
                "0")
        .option("detector", "NAME", "face detector back-end (opencv, opencv-lbp, dlib)", "opencv")
        .option("min-face", "N",
                "smallest face side found, in pixels (a smaller face is enlarged to the "
                "network's 48 x 48 anyway)",
                "48")
        .option("detect-size", "N",
                "detect on a copy whose longer side is N pixels (auto: as small as min-face "
                "allows without losing a face; 0: full size)",
                "auto")
        .option("max-age", "N",
                "detections (one every --detect-every frames) that may miss a face before its id "
                "is retired",
                "10")
        .option("min-iou", "X", "overlap a detection needs with a face's last box to continue it",
                "0.3")
        .option("frames", "N", "stop after N frames (0: until the input ends)", "0")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("precision", "fp32|bf16",
                "bf16: the convolutions and dense layers multiply bf16-rounded operands and sum in "
                "fp32",
                "fp32")
        .flag("no-window", "never open a window (the default without $DISPLAY or for files)")
        .flag("quiet", "no progress bar")
        .positional("INPUT", "a video file (any format OpenCV/FFmpeg reads)");
    add_detector_threshold_option(cli);
    add_verifier_options(cli, "none");
    add_video_speed_options(cli);
    return cli;
}

/// The detector options `fer video` (and its benchmark) use: --min-face and --detect-size, whose
/// "auto" shrinks a frame of `longer_side` pixels as far as the back-end's smallest window
/// still finds a face of min-face pixels, and --scale-step.
inline facet::vision::DetectorOptions video_detector_options(const Cli& cli, int longer_side,
                                                             const std::string& detector) {
    facet::vision::DetectorOptions o;
    o.min_face = static_cast<int>(cli.integer("min-face"));
    facet::check(o.min_face >= 8, "video: --min-face must be at least 8, got ", o.min_face);
    const std::string size = cli.str("detect-size");
    if (size == "auto")
        o.downscale_to = lossless_detect_size(detector, o.min_face, longer_side);
    else
        o.downscale_to = static_cast<double>(cli.integer("detect-size"));
    facet::check(o.downscale_to >= 0, "video: --detect-size must be >= 0");
    const std::string step = cli.str("scale-step");
    if (step != "auto") {
        o.scale_step = cli.number("scale-step");
        facet::check(o.scale_step > 1 && o.scale_step <= 2,
                     "video: --scale-step must be in (1, 2] or auto, got ", step);
    }
    apply_detector_threshold(cli, o);
    return o;
}

/// --detect-every, checked.
inline int detect_every_option(const Cli& cli) {
    const long long n = cli.integer("detect-every");
    facet::check(n >= 1 && n <= 1000, "video: --detect-every must be 1 to 1000, got ", n);
    return static_cast<int>(n);
}

inline int run_video(const Cli& cli) {
    VideoConfig c;
    facet::check(cli.has("camera") != !cli.positionals().empty(),
                 "video: give one video file or --camera N (see --help)");
    if (cli.has("camera")) {
        c.camera = static_cast<int>(cli.integer("camera"));
        facet::check(c.camera >= 0, "video: --camera must be >= 0");
    } else {
        facet::check(cli.positionals().size() == 1, "video: give one video file (see --help)");
        c.input = cli.positionals().front();
    }
    c.csv = cli.has("csv") ? cli.str("csv") : "";
    c.output = cli.has("output") ? cli.str("output") : "";
    c.save_faces = cli.has("save-faces") ? cli.str("save-faces") : "";
    c.analysis.smooth = cli.number("smooth");
    c.analysis.tracking.max_age = static_cast<int>(cli.integer("max-age"));
    c.analysis.tracking.min_iou = cli.number("min-iou");
    c.analysis.detect_every = detect_every_option(cli);
    c.max_frames = cli.integer("frames");
    const char* display = std::getenv("DISPLAY");
    c.window = !cli.has("no-window") && display != nullptr && *display != '\0';
    c.progress = !cli.has("quiet");
    const int threads = static_cast<int>(cli.integer("threads"));
    facet::set_num_threads(threads);
    cv::setNumThreads(facet::num_threads());
    const facet::Precision precision = parse_precision(cli.str("precision"), "video");
    facet::set_precision(precision);
    std::cerr << bf16_speed_note(precision);

    cv::VideoCapture cap = open_video_input(c);
    TrainedModel model = load_trained(model_to_use(cli, "video"));
    // The frame size decides the automatic detection size.
    const int longer = static_cast<int>(
        std::max(cap.get(cv::CAP_PROP_FRAME_WIDTH), cap.get(cv::CAP_PROP_FRAME_HEIGHT)));
    const std::string name = cli.str("detector");
    const facet::vision::DetectorOptions options = video_detector_options(cli, longer, name);
    std::unique_ptr<facet::vision::FaceDetector> detector = make_cli_detector(cli, name, options);
    const VideoSummary s = process_video(c, cap, model, *detector);
    const StageTimes& t = s.times;
    const double per_frame = 1e3 / static_cast<double>(std::max<long>(1, s.frames));
    std::fprintf(stderr,
                 "%ld frames, %zu faces in %.1f s (%.1f frames/s; detector %s at %s); per frame: "
                 "decode %.1f ms, detection %.1f, alignment %.1f, classification %.1f, "
                 "drawing %.1f\n",
                 s.frames, t.faces, s.seconds, static_cast<double>(s.frames) / s.seconds,
                 detector->name().c_str(),
                 options.downscale_to > 0
                     ? (std::to_string(static_cast<int>(options.downscale_to)) + " px").c_str()
                     : "full size",
                 t.decode * per_frame, t.detect * per_frame, t.align * per_frame,
                 t.classify * per_frame, t.draw * per_frame);
    if (c.camera >= 0)
        std::fprintf(stderr, "dropped %ld frames the pipeline could not keep up with\n", s.dropped);
    if (!c.csv.empty()) std::fprintf(stderr, "wrote %s\n", c.csv.c_str());
    if (!c.output.empty()) std::fprintf(stderr, "wrote %s\n", c.output.c_str());
    return 0;
}

}  // namespace fer
