// Tests of the two-stage detector (vision/verified_detector.hpp) with a scripted first stage and
// verifier: only candidates at or above the probability are kept, their score becomes it, they
// come most probable first, the first stage's name and boxes pass through, an empty proposal
// skips the verifier, and a verifier that answers for the wrong number of candidates, a NaN, or a
// threshold outside [0, 1] are refused or keep nothing; of overlapping faces only the most
// probable is kept, unless the first stage is sure of another.
#include <facet/vision/verified_detector.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

namespace vision = facet::vision;

namespace {

/// A first stage that returns the same candidates for every picture.
class ScriptedDetector : public vision::FaceDetector {
  public:
    explicit ScriptedDetector(std::vector<vision::DetectedFace> faces) : faces_(std::move(faces)) {}
    std::string name() const override { return "scripted"; }
    std::vector<vision::DetectedFace> detect(const vision::GrayView&) override { return faces_; }

  private:
    std::vector<vision::DetectedFace> faces_;
};

vision::DetectedFace candidate(int x, float score) {
    vision::DetectedFace f;
    f.box = {x, 2 * x, 40, 40};
    f.score = score;
    f.landmarks = {{float(x), 1.f}};
    return f;
}

/// A verifier that gives each candidate the probability listed for its box's x, and counts calls.
struct ScriptedVerifier {
    std::vector<std::pair<int, float>> by_x;
    int* calls;
    std::vector<float> operator()(const vision::GrayView&,
                                  const std::vector<vision::DetectedFace>& faces) const {
        ++*calls;
        std::vector<float> p;
        for (const auto& f : faces)
            for (const auto& [x, prob] : by_x)
                if (f.box.x == x) p.push_back(prob);
        return p;
    }
};

const std::uint8_t pixel = 0;
const vision::GrayView picture = vision::gray_view(&pixel, 1, 1);

}  // namespace

TEST_CASE("the verifier keeps the candidates it believes, scored by its probability") {
    int calls = 0;
    vision::VerifiedFaceDetector detector(
        std::make_unique<ScriptedDetector>(std::vector<vision::DetectedFace>{
            candidate(10, 1.5f), candidate(20, -0.9f), candidate(30, 0.2f), candidate(40, -0.3f)}),
        ScriptedVerifier{{{10, 0.2f}, {20, 0.95f}, {30, 0.5f}, {40, 0.7f}}, &calls}, 0.5);
    CHECK(detector.name() == "scripted");
    const std::vector<vision::DetectedFace> faces = detector.detect(picture);
    CHECK(calls == 1);
    REQUIRE(faces.size() == 3);  // x = 10 is dropped (0.2); 0.5 itself is kept
    CHECK(faces[0].box.x == 20);
    CHECK(faces[0].score == doctest::Approx(0.95));
    CHECK(faces[1].box.x == 40);
    CHECK(faces[2].box.x == 30);
    CHECK(faces[2].score == doctest::Approx(0.5));
    // Boxes and landmarks are the first stage's.
    CHECK(faces[0].box.y == 40);
    CHECK(faces[0].box.width == 40);
    REQUIRE(faces[0].landmarks.size() == 1);
    CHECK(faces[0].landmarks[0].x == 20);
}

TEST_CASE("threshold 0 keeps every candidate; threshold 1 only certain ones") {
    int calls = 0;
    const std::vector<vision::DetectedFace> three = {candidate(1, 0), candidate(2, 0),
                                                     candidate(3, 0)};
    const ScriptedVerifier verifier{{{1, 0.0f}, {2, 1.0f}, {3, 0.999f}}, &calls};
    vision::VerifiedFaceDetector all(std::make_unique<ScriptedDetector>(three), verifier, 0.0);
    CHECK(all.detect(picture).size() == 3);
    vision::VerifiedFaceDetector sure(std::make_unique<ScriptedDetector>(three), verifier, 1.0);
    const auto kept = sure.detect(picture);
    REQUIRE(kept.size() == 1);
    CHECK(kept[0].box.x == 2);
}

TEST_CASE("no candidate: the verifier is not asked") {
    int calls = 0;
    vision::VerifiedFaceDetector detector(
        std::make_unique<ScriptedDetector>(std::vector<vision::DetectedFace>{}),
        ScriptedVerifier{{}, &calls}, 0.5);
    CHECK(detector.detect(picture).empty());
    CHECK(calls == 0);
}

TEST_CASE("a verifier answering for the wrong number of faces, NaN, and bad thresholds") {
    int calls = 0;
    const std::vector<vision::DetectedFace> two = {candidate(1, 0), candidate(2, 0)};
    // Only x = 1 is listed: one probability for two candidates.
    vision::VerifiedFaceDetector short_answer(std::make_unique<ScriptedDetector>(two),
                                              ScriptedVerifier{{{1, 0.9f}}, &calls}, 0.5);
    CHECK_THROWS_WITH_AS(short_answer.detect(picture),
                         doctest::Contains("gave 1 probabilities for 2 candidates"), facet::Error);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    vision::VerifiedFaceDetector broken(std::make_unique<ScriptedDetector>(two),
                                        ScriptedVerifier{{{1, nan}, {2, nan}}, &calls}, 0.0);
    CHECK(broken.detect(picture).empty());
    for (const double bad : {-0.1, 1.5, double(nan)})
        CHECK_THROWS_AS(vision::VerifiedFaceDetector(std::make_unique<ScriptedDetector>(two),
                                                     ScriptedVerifier{{}, &calls}, bad),
                        facet::Error);
    CHECK_THROWS_AS(vision::VerifiedFaceDetector(nullptr, ScriptedVerifier{{}, &calls}, 0.5),
                    facet::Error);
    CHECK_THROWS_AS(
        vision::VerifiedFaceDetector(std::make_unique<ScriptedDetector>(two), nullptr, 0.5),
        facet::Error);
}

TEST_CASE("overlapping faces: the most probable kept, by IoU of their boxes") {
    // One face found three times (a box, one shifted by 8, one twice the size around both) and a
    // face apart.
    auto at = [](int x, int y, int side) {
        vision::DetectedFace f;
        f.box = {x, y, side, side};
        return f;
    };
    const std::vector<vision::DetectedFace> found = {at(100, 100, 40), at(108, 100, 40),
                                                     at(80, 80, 80), at(300, 100, 40)};
    int calls = 0;
    const ScriptedVerifier verifier{{{100, 0.6f}, {108, 0.9f}, {80, 0.8f}, {300, 0.3f}}, &calls};
    auto kept_x = [&](double max_iou) {
        vision::VerifiedFaceDetector d(std::make_unique<ScriptedDetector>(found), verifier, 0.0,
                                       max_iou);
        std::vector<int> xs;
        for (const auto& f : d.detect(picture)) xs.push_back(f.box.x);
        return xs;
    };
    CHECK(kept_x(1.0) == std::vector<int>{108, 80, 100, 300});  // the default: all of them
    // 0.5: the shifted box (0.9) suppresses the first (IoU 0.667); the large one holds the shifted
    // one whole (IoU 1600 / 6400 = 0.25) and stays.
    CHECK(kept_x(0.5) == std::vector<int>{108, 80, 300});
    CHECK(kept_x(0.25) == std::vector<int>{108, 80, 300});  // 0.25 itself is not above 0.25
    CHECK(kept_x(0.2) == std::vector<int>{108, 300});
    CHECK(kept_x(0.0) == std::vector<int>{108, 300});  // any overlap at all
    CHECK(vision::suppress_overlaps({}, 0.3).empty());
    for (const double bad : {-0.1, 1.5, std::nan("")})
        CHECK_THROWS_WITH_AS(vision::VerifiedFaceDetector(std::make_unique<ScriptedDetector>(found),
                                                          verifier, 0.5, bad),
                             doctest::Contains("max_iou"), facet::Error);
}

TEST_CASE("overlapping faces: a face the first stage is sure of ranks ahead of doubtful ones") {
    // The same face found twice: well framed with the first stage's score 0.5 (sure at 0), and
    // framed from its nose down with -0.6, which the verifier believes more.
    vision::DetectedFace framed, low;
    framed.box = {100, 100, 60, 60}, framed.score = 0.5f;
    low.box = {105, 130, 50, 50}, low.score = -0.6f;
    int calls = 0;
    const ScriptedVerifier verifier{{{100, 0.4f}, {105, 0.9f}}, &calls};
    auto kept = [&](double sure_score) {
        vision::VerifiedFaceDetector d(
            std::make_unique<ScriptedDetector>(std::vector<vision::DetectedFace>{framed, low}),
            verifier, 0.1, 0.2, sure_score);
        return d.detect(picture);
    };
    const auto off = kept(std::numeric_limits<double>::infinity());  // most probable wins
    REQUIRE(off.size() == 1);
    CHECK(off[0].box.x == 105);
    const auto sure = kept(0.0);
    REQUIRE(sure.size() == 1);
    CHECK(sure[0].box.x == 100);
    CHECK(sure[0].score == doctest::Approx(0.4));  // still scored by the verifier
    const auto both_doubtful = kept(0.6);          // neither is sure: most probable again
    REQUIRE(both_doubtful.size() == 1);
    CHECK(both_doubtful[0].box.x == 105);
    CHECK_THROWS_AS(vision::VerifiedFaceDetector(std::make_unique<ScriptedDetector>(
                                                     std::vector<vision::DetectedFace>{framed}),
                                                 verifier, 0.1, 0.2, std::nan("")),
                    facet::Error);
}
