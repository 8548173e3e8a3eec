// Tests of `fer video` (examples/fer/video.hpp) on short videos the tests write: the CSV has the
// exact header and one row per face per frame, each true face keeps one id for the whole video
// (with the detector's order shuffled, its boxes jittered and a face missed for a frame), the
// probabilities sum to 1 and smoothing keeps them so; the annotated video has every frame; the
// real detector runs the whole command; live input keeps only the newest frame and counts the
// others as dropped; a corrupt or truncated video, a missing file and a
// camera that cannot be opened end the program with one clear line and a non-zero exit status.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "fer/train.hpp"
#include "fer/video_bench.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using facet::vision::Rect;

namespace {

using facet_test::scratch;

/// A model file from one short epoch on a few synthetic faces (the formats and ids are tested,
/// not the accuracy), trained once for all the tests.
const std::string& model_file() {
    static const std::string path = [] {
        fer::SyntheticFaceOptions o;
        o.train_per_class = 4, o.test_per_class = 2;
        fer::TrainConfig c;
        c.out = scratch("model");
        c.epochs = 1, c.batch = 14, c.threads = 2, c.seed = 3, c.checkpoint_every = 0;
        REQUIRE(fer::train_on(c, fer::make_synthetic_faces(o)) == 0);
        return c.out + "/model.facet";
    }();
    return path;
}

/// `count` 48 x 48 synthetic faces, of different classes.
std::vector<cv::Mat> synthetic_faces(std::size_t count) {
    fer::SyntheticFaceOptions o;
    o.train_per_class = 1, o.test_per_class = 1;
    const facet::DataSplits s = fer::make_synthetic_faces(o);
    const facet::Dataset& d = s.splits.front();
    std::vector<cv::Mat> faces;
    for (std::size_t i = 0; i < count; ++i)
        faces.push_back(cv::Mat(48, 48, CV_8U, const_cast<std::uint8_t*>(d.image(i))).clone());
    return faces;
}

/// DIR/two.avi: a video of `spec` with two synthetic faces that OpenCV's Haar cascade finds when
/// alone, so a run of fer video on it must find faces too. Returns its path.
std::string two_face_video(const std::string& dir, const fer::TestVideoSpec& spec) {
    std::unique_ptr<facet::vision::FaceDetector> picker =
        facet::vision::make_face_detector("opencv", {});
    const std::vector<cv::Mat> faces = fer::detectable_faces({}, 2, spec.face_side, *picker);
    const std::string video = dir + "/two.avi";
    fer::make_test_video(video, faces, spec);
    return video;
}

/// A stand-in detector that reports the faces the test video holds: each frame's true boxes,
/// jittered by up to 2 pixels, in an order that changes from frame to frame, with face
/// `missed_face` left out in frame `missed_frame`. It checks that it sees the frames in order.
class ScriptedDetector : public facet::vision::FaceDetector {
  public:
    ScriptedDetector(std::vector<std::vector<Rect>> truth, int missed_frame, int missed_face)
        : truth_(std::move(truth)), missed_frame_(missed_frame), missed_face_(missed_face) {}
    std::string name() const override { return "scripted"; }
    std::vector<facet::vision::DetectedFace> detect(const facet::vision::GrayView& image) override {
        REQUIRE(frame_ < static_cast<int>(truth_.size()));
        CHECK(image.width == 320);
        std::vector<facet::vision::DetectedFace> faces;
        const auto& boxes = truth_[static_cast<std::size_t>(frame_)];
        for (std::size_t k = 0; k < boxes.size(); ++k) {
            const std::size_t i = (k + static_cast<std::size_t>(frame_)) % boxes.size();
            if (frame_ == missed_frame_ && static_cast<int>(i) == missed_face_) continue;
            const int jx = (frame_ * 7 + static_cast<int>(i) * 3) % 5 - 2,
                      jy = (frame_ * 3 + static_cast<int>(i) * 5) % 5 - 2;
            Rect b = boxes[i];
            b.x += jx, b.y += jy;
            faces.push_back({b, 1.0f, {}});
        }
        ++frame_;
        return faces;
    }

  private:
    std::vector<std::vector<Rect>> truth_;
    int missed_frame_, missed_face_, frame_ = 0;
};

std::vector<std::string> lines_of(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

std::vector<std::string> fields_of(const std::string& line) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    return f;
}

/// Runs the fer program with `args`; returns its exit status and what it printed on stderr.
std::pair<int, std::string> run_fer(const std::string& args) {
    const std::string err = facet_test::scratch_root() / "stderr.txt";
    const std::string command =
        std::string(FACET_FER_PROGRAM) + " " + args + " >/dev/null 2>" + err;
    const int status = std::system(command.c_str());
    std::ifstream in(err);
    std::stringstream text;
    text << in.rdbuf();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

}  // namespace

TEST_CASE("the CSV: exact header, one row per face per frame, stable ids, probabilities sum to 1") {
    const std::string dir = scratch("tracked");
    const std::string video = dir + "/three.avi";
    fer::TestVideoSpec spec;
    spec.width = 320, spec.height = 240, spec.frames = 24, spec.face_side = 64;
    const auto truth = make_test_video(video, synthetic_faces(3), spec);
    REQUIRE(truth.size() == 24);
    const int missed_frame = 10, missed_face = 1;

    for (const double smooth : {0.0, 0.8}) {
        CAPTURE(smooth);
        fer::TrainedModel model = fer::load_trained(model_file());
        ScriptedDetector detector(truth, missed_frame, missed_face);
        fer::VideoConfig c;
        c.input = video;
        c.csv = dir + "/faces.csv";
        c.output = dir + "/annotated.avi";
        c.progress = false;
        c.analysis.smooth = smooth;
        c.analysis.tracking.max_age = 3;
        cv::VideoCapture cap = fer::open_video_input(c);
        const fer::VideoSummary s = fer::process_video(c, cap, model, detector);
        CHECK(s.frames == 24);
        CHECK(s.times.faces == 24 * 3 - 1);

        const std::vector<std::string> lines = lines_of(c.csv);
        REQUIRE(!lines.empty());
        CHECK(lines[0] ==
              "frame,time_s,face_id,x,y,w,h,emotion,p_angry,p_disgust,p_fear,p_happy,p_sad,"
              "p_surprise,p_neutral");
        REQUIRE(lines.size() == 1 + 24 * 3 - 1);
        // Which true face each id belongs to: the one whose box it overlaps most.
        std::map<int, std::set<int>> faces_of_id;
        std::map<int, std::set<int>> ids_of_face;
        std::vector<int> rows_per_frame(24, 0);
        for (std::size_t r = 1; r < lines.size(); ++r) {
            CAPTURE(lines[r]);
            const std::vector<std::string> f = fields_of(lines[r]);
            REQUIRE(f.size() == 15);
            const int frame = std::stoi(f[0]), id = std::stoi(f[2]);
            REQUIRE(frame >= 0);
            REQUIRE(frame < 24);
            ++rows_per_frame[static_cast<std::size_t>(frame)];
            CHECK(std::stod(f[1]) == doctest::Approx(frame / spec.fps).epsilon(0.01));
            const Rect box{std::stoi(f[3]), std::stoi(f[4]), std::stoi(f[5]), std::stoi(f[6])};
            int best = -1;
            double best_iou = 0;
            for (int i = 0; i < 3; ++i) {
                const double o = iou(box, truth[static_cast<std::size_t>(frame)][std::size_t(i)]);
                if (o > best_iou) best = i, best_iou = o;
            }
            CHECK(best_iou > 0.8);
            CHECK_FALSE((frame == missed_frame && best == missed_face));
            faces_of_id[id].insert(best), ids_of_face[best].insert(id);
            double sum = 0, top = -1;
            std::string top_name;
            for (std::size_t k = 0; k < 7; ++k) {
                const double p = std::stod(f[8 + k]);
                CHECK(p >= 0);
                sum += p;
                if (p > top) top = p, top_name = std::string(fer::video_csv_emotions[k]);
            }
            CHECK(sum == doctest::Approx(1.0).epsilon(1e-4));
            CHECK(f[7] == top_name);  // the emotion column names the largest probability
        }
        for (int frame = 0; frame < 24; ++frame)
            CHECK(rows_per_frame[std::size_t(frame)] == (frame == missed_frame ? 2 : 3));
        // Three ids, each for one face, each face under one id for the whole video (the missed
        // frame included: max_age 3 keeps the id alive).
        CHECK(faces_of_id.size() == 3);
        for (const auto& [id, faces] : faces_of_id) CHECK(faces.size() == 1);
        for (const auto& [face, ids] : ids_of_face) CHECK(ids.size() == 1);

        // The annotated video has every frame at the input's size; no temporary is left.
        cv::VideoCapture annotated(c.output);
        REQUIRE(annotated.isOpened());
        CHECK(annotated.get(cv::CAP_PROP_FRAME_WIDTH) == 320);
        int frames = 0;
        for (cv::Mat m; annotated.read(m);) ++frames;
        CHECK(frames == 24);
        for (const auto& e : fs::directory_iterator(dir))
            CHECK_MESSAGE(e.path().filename().string().find(".tmp") == std::string::npos, e.path());
    }
}

TEST_CASE("smoothing: a moving average per face, still summing to 1") {
    // Feed the same faces twice through a smoothing analyzer: after the first frame the
    // probabilities move from the first frame's towards the second's by (1 - X).
    fer::TrainedModel model = fer::load_trained(model_file());
    const auto faces = synthetic_faces(2);
    cv::Mat a(120, 240, CV_8U, cv::Scalar(100)), b;
    cv::Mat big;
    cv::resize(faces[0], big, cv::Size(96, 96));
    big.copyTo(a(cv::Rect(10, 10, 96, 96)));
    a.copyTo(b);
    cv::resize(faces[1], big, cv::Size(96, 96));
    big.copyTo(b(cv::Rect(10, 10, 96, 96)));
    struct Fixed : facet::vision::FaceDetector {
        std::string name() const override { return "fixed"; }
        std::vector<facet::vision::DetectedFace> detect(const facet::vision::GrayView&) override {
            return {{{10, 10, 96, 96}, 1.0f, {}}};
        }
    } detector;
    fer::StageTimes times;
    fer::FrameAnalyzer plain(model, detector, {});
    const std::vector<float> pa = plain.analyze(a, times).at(0).probabilities;
    const std::vector<float> pb = plain.analyze(b, times).at(0).probabilities;
    fer::AnalyzerOptions o;
    o.smooth = 0.75;
    fer::FrameAnalyzer smoothed(model, detector, o);
    CHECK(smoothed.analyze(a, times).at(0).probabilities == pa);  // a new face starts unsmoothed
    const std::vector<float> ps = smoothed.analyze(b, times).at(0).probabilities;
    double sum = 0;
    for (std::size_t k = 0; k < ps.size(); ++k) {
        CHECK(ps[k] == doctest::Approx(0.75 * pa[k] + 0.25 * pb[k]).epsilon(1e-6));
        sum += ps[k];
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    CHECK_THROWS_AS(fer::FrameAnalyzer(model, detector, {{}, 1.0}), facet::Error);
}

TEST_CASE("fer video with the real detector writes the CSV and the annotated video") {
    const std::string dir = scratch("cli");
    fer::TestVideoSpec spec;
    spec.frames = 20;
    const std::string video = two_face_video(dir, spec);
    const auto [status, err] =
        run_fer("video --model " + model_file() + " " + video + " --csv " + dir +
                "/out.csv --output " + dir + "/out.mp4 --quiet --threads 1 --smooth 0.5");
    REQUIRE_MESSAGE(status == 0, err);
    const std::vector<std::string> lines = lines_of(dir + "/out.csv");
    REQUIRE(lines.size() > 1);
    CHECK(lines[0] == fer::video_csv_header());
    std::set<int> frames;
    for (std::size_t r = 1; r < lines.size(); ++r) {
        const std::vector<std::string> f = fields_of(lines[r]);
        REQUIRE(f.size() == 15);
        frames.insert(std::stoi(f[0]));
        double sum = 0;
        for (std::size_t k = 8; k < 15; ++k) sum += std::stod(f[k]);
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-4));
    }
    CHECK(frames.size() >= 10);  // faces were found in most frames
    cv::VideoCapture annotated(dir + "/out.mp4");
    REQUIRE(annotated.isOpened());
    int count = 0;
    for (cv::Mat m; annotated.read(m);) ++count;
    CHECK(count == 20);
}

TEST_CASE("fer video --verifier: at probability 0 every face kept, an emotion model refused") {
    const fs::path verifier = fs::path(FACET_SOURCE_DIR) / "models" / "face-verifier.facet";
    if (!fs::exists(verifier)) {
        MESSAGE("SKIPPED: no models/face-verifier.facet");
        return;
    }
    const std::string dir = scratch("verifier");
    fer::TestVideoSpec spec;
    spec.frames = 12;
    const std::string video = two_face_video(dir, spec);
    const std::string common = "video --model " + model_file() + " " + video +
                               " --quiet --threads 1 --detector opencv --detect-every 1";
    const auto [alone, alone_err] = run_fer(common + " --csv " + dir + "/alone.csv");
    REQUIRE_MESSAGE(alone == 0, alone_err);
    // With the verifier the cascade proposes with 1 neighbour, and probability 0 keeps them all but
    // those overlapping a more probable one: at least the faces of the cascade alone.
    const auto [all, all_err] = run_fer(common + " --verifier " + verifier.string() +
                                        " --verifier-threshold 0 --csv " + dir + "/all.csv");
    REQUIRE_MESSAGE(all == 0, all_err);
    CHECK(lines_of(dir + "/all.csv").size() >= lines_of(dir + "/alone.csv").size());
    CHECK(lines_of(dir + "/all.csv").size() > 1);
    const auto [bad, bad_err] =
        run_fer(common + " --verifier " + model_file() + " --csv " + dir + "/bad.csv");
    CHECK(bad != 0);
    CHECK(bad_err.find("not a face verifier") != std::string::npos);
}

TEST_CASE("--detect-every 3: the frames between detections keep its boxes and ids") {
    const std::string dir = scratch("every");
    fer::TestVideoSpec spec;
    spec.frames = 12;
    const std::string video = two_face_video(dir, spec);
    // Rows by frame: {face id, x, y, w, h} of each face.
    auto boxes_by_frame = [&](const std::string& flags) {
        const std::string csv = dir + "/out.csv";
        const auto [status, err] = run_fer("video --model " + model_file() + " " + video +
                                           " --csv " + csv + " --quiet --threads 1 " + flags);
        REQUIRE_MESSAGE(status == 0, err);
        std::map<int, std::vector<std::vector<std::string>>> rows;
        const std::vector<std::string> lines = lines_of(csv);
        for (std::size_t r = 1; r < lines.size(); ++r) {
            const std::vector<std::string> f = fields_of(lines[r]);
            REQUIRE(f.size() == 15);
            rows[std::stoi(f[0])].push_back({f[2], f[3], f[4], f[5], f[6]});
        }
        return rows;
    };
    const auto every = boxes_by_frame("--detect-every 1");
    const auto third = boxes_by_frame("--detect-every 3");
    CHECK(third.size() >= 6);  // faces were found at two detections or more
    // The faces move: detected on every frame, their boxes change from frame to frame, so the
    // equal boxes below come from the kept detection.
    bool moved = false;
    for (int frame = 1; frame < spec.frames; ++frame)
        moved = moved || (every.count(frame) && every.count(frame - 1) &&
                          every.at(frame) != every.at(frame - 1));
    CHECK(moved);
    for (int frame = 0; frame < spec.frames; ++frame) {
        CAPTURE(frame);
        const int detected = frame - frame % 3;  // the frame whose detection it keeps
        CHECK(third.count(frame) == third.count(detected));
        if (third.count(frame) && third.count(detected))
            CHECK(third.at(frame) == third.at(detected));
        // Where both detected, they found the same faces in the same boxes with the same ids.
        if (frame == detected && every.count(frame)) CHECK(third.at(frame) == every.at(frame));
    }
    for (const std::string bad : {"--detect-every 0", "--detect-every x", "--scale-step 1",
                                  "--scale-step 2.5", "--scale-step nan"}) {
        CAPTURE(bad);
        const auto [status, err] =
            run_fer("video --model " + model_file() + " " + video + " --quiet --threads 1 " + bad);
        CHECK(status != 0);
        CHECK(err.find(bad.substr(0, bad.find(' '))) != std::string::npos);
    }
}

TEST_CASE("bad input: corrupt, truncated or missing video, a camera that cannot be opened") {
    const std::string dir = scratch("bad");
    const std::string junk = dir + "/junk.mp4";
    std::ofstream(junk) << std::string(4096, 'x') << "this is not a video";
    // A real video cut after its first 300 bytes: the header is there, the frames are not.
    const std::string good = dir + "/good.avi";
    fer::TestVideoSpec spec;
    spec.width = 160, spec.height = 120, spec.frames = 5, spec.face_side = 48;
    make_test_video(good, synthetic_faces(1), spec);
    const std::string cut = dir + "/cut.avi";
    {
        std::ifstream in(good, std::ios::binary);
        std::string bytes(300, '\0');
        in.read(bytes.data(), 300);
        std::ofstream(cut, std::ios::binary) << bytes;
    }
    const std::string model = "--model " + model_file() + " --csv " + dir + "/out.csv ";
    for (const std::string& input : {junk, cut, dir + "/absent.mp4", dir}) {
        CAPTURE(input);
        const auto [status, err] = run_fer("video " + model + input);
        CHECK(status != 0);
        CHECK(err.find(input) != std::string::npos);
        CHECK(std::count(err.begin(), err.end(), '\n') == 1);  // one line
    }
    const auto [status, err] = run_fer("video " + model + "--camera 99");
    CHECK(status != 0);
    CHECK(err.find("camera 99") != std::string::npos);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(dir + "/out.csv"));  // nothing half-written
    // Usage mistakes are refused too.
    CHECK(run_fer("video " + model).first != 0);                           // no input
    CHECK(run_fer("video " + model + junk + " --camera 0").first != 0);    // both
    CHECK(run_fer("video " + model + good + " --smooth 1.5").first != 0);  // smooth out of range
}

TEST_CASE("live input keeps only the newest frame: the others are dropped and counted") {
    fer::LatestFrame latest;
    for (int i = 0; i < 5; ++i) {
        cv::Mat m(2, 2, CV_8U, cv::Scalar(i));
        latest.put(m);
    }
    cv::Mat got;
    long index = -1;
    REQUIRE(latest.take(got, index));
    CHECK(index == 4);  // the newest
    CHECK(got.at<std::uint8_t>(0, 0) == 4);
    CHECK(latest.dropped() == 4);
    latest.close();
    CHECK_FALSE(latest.take(got, index));  // closed and nothing new: the end

    // A file read the live way: the capture thread reads as fast as it decodes, the pipeline is
    // slower; every frame is either analysed or counted as dropped, and the rows name the
    // frames analysed, in capture order.
    const std::string dir = scratch("live");
    fer::TestVideoSpec spec;
    spec.width = 320, spec.height = 240, spec.frames = 40, spec.face_side = 64;
    const std::string video = dir + "/live.avi";
    const auto truth = make_test_video(video, synthetic_faces(2), spec);
    struct Slow : facet::vision::FaceDetector {
        std::string name() const override { return "slow"; }
        std::vector<facet::vision::DetectedFace> detect(const facet::vision::GrayView&) override {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            return {{{20, 20, 64, 64}, 1.0f, {}}};
        }
    } detector;
    fer::TrainedModel model = fer::load_trained(model_file());
    fer::VideoConfig c;
    c.input = video, c.live = true, c.csv = dir + "/live.csv", c.progress = false;
    cv::VideoCapture cap = fer::open_video_input(c);
    const fer::VideoSummary s = fer::process_video(c, cap, model, detector);
    CHECK(s.frames + s.dropped == 40);
    CHECK(s.frames >= 1);
    const std::vector<std::string> lines = lines_of(c.csv);
    REQUIRE(lines.size() == static_cast<std::size_t>(s.frames) + 1);
    long previous = -1;
    for (std::size_t r = 1; r < lines.size(); ++r) {
        const long frame = std::stol(fields_of(lines[r])[0]);
        CHECK(frame > previous);
        CHECK(frame < 40);
        previous = frame;
    }
}
