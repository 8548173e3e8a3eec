// Tests of the IoU tracker (vision/tracker.hpp): the overlap measure against hand-computed
// values, ids that stay with their object while it moves, new ids for new objects (never a
// reused one), a missed detection that keeps the id within max_age, retirement after it, and
// the order-independence of the matching.
#include <facet/vision/tracker.hpp>

#include <doctest/doctest.h>

using facet::vision::iou;
using facet::vision::IouTracker;
using facet::vision::Rect;
using facet::vision::TrackerOptions;

TEST_CASE("iou: disjoint, touching, nested, equal and half-overlapping boxes") {
    CHECK(iou({0, 0, 10, 10}, {20, 20, 5, 5}) == 0.0);
    CHECK(iou({0, 0, 10, 10}, {10, 0, 10, 10}) == 0.0);  // edges touch, no area in common
    CHECK(iou({0, 0, 10, 10}, {0, 0, 10, 10}) == 1.0);
    CHECK(iou({0, 0, 10, 10}, {0, 0, 5, 10}) == doctest::Approx(0.5));
    CHECK(iou({0, 0, 10, 10}, {5, 0, 10, 10}) == doctest::Approx(50.0 / 150.0));
    CHECK(iou({0, 0, 0, 0}, {0, 0, 0, 0}) == 0.0);  // empty boxes: no division by zero
}

TEST_CASE("three objects moving slowly keep their ids, in any detection order") {
    IouTracker tracker;
    std::vector<int> first =
        tracker.update({{10, 10, 50, 50}, {200, 10, 50, 50}, {10, 200, 60, 60}});
    CHECK(first == std::vector<int>{1, 2, 3});
    for (int step = 1; step <= 30; ++step) {
        const Rect a{10 + 2 * step, 10, 50, 50}, b{200, 10 + step, 50, 50},
            c{10 + step, 200 - step, 60, 60};
        // The detector's order changes from frame to frame; the ids must follow the boxes.
        const std::vector<int> ids =
            step % 2 ? tracker.update({c, a, b}) : tracker.update({a, b, c});
        CHECK(ids == (step % 2 ? std::vector<int>{3, 1, 2} : std::vector<int>{1, 2, 3}));
    }
    CHECK(tracker.tracks().size() == 3);
}

TEST_CASE("a new object gets a new id; a retired id is never given again") {
    IouTracker tracker(TrackerOptions{0.3, 2});
    CHECK(tracker.update({{0, 0, 40, 40}}) == std::vector<int>{1});
    CHECK(tracker.update({{2, 0, 40, 40}, {300, 300, 40, 40}}) == std::vector<int>{1, 2});
    // Object 1 leaves; object 2 stays.
    for (int i = 0; i < 3; ++i) CHECK(tracker.update({{300, 300, 40, 40}}) == std::vector<int>{2});
    CHECK_FALSE(tracker.alive(1));
    // Something appears where object 1 was: a new object, a new id.
    CHECK(tracker.update({{300, 300, 40, 40}, {2, 0, 40, 40}}) == std::vector<int>{2, 3});
}

TEST_CASE("a missed detection keeps the id within max_age; after max_age the track is retired") {
    IouTracker tracker(TrackerOptions{0.3, 3});
    const Rect box{100, 100, 50, 50};
    CHECK(tracker.update({box}) == std::vector<int>{1});
    for (int miss = 1; miss <= 3; ++miss) {
        tracker.update({});
        REQUIRE(tracker.alive(1));
        CHECK(tracker.tracks().front().misses == miss);
    }
    CHECK(tracker.update({box}) == std::vector<int>{1});  // back after 3 missed frames: same id
    CHECK(tracker.tracks().front().misses == 0);
    CHECK(tracker.tracks().front().hits == 2);
    for (int miss = 1; miss <= 4; ++miss) tracker.update({});
    CHECK_FALSE(tracker.alive(1));  // 4 > max_age missed frames: retired
    CHECK(tracker.tracks().empty());
    CHECK(tracker.update({box}) == std::vector<int>{2});
}

TEST_CASE("two detections never share a track; the better overlap wins") {
    IouTracker tracker;
    CHECK(tracker.update({{0, 0, 100, 100}}) == std::vector<int>{1});
    // Both overlap the track; the second overlaps it more and takes the id.
    const std::vector<int> ids = tracker.update({{30, 0, 100, 100}, {5, 0, 100, 100}});
    CHECK(ids == std::vector<int>{2, 1});
    CHECK(tracker.tracks().size() == 2);
}

TEST_CASE("a jump larger than the overlap threshold is a new object") {
    IouTracker tracker(TrackerOptions{0.5, 0});
    CHECK(tracker.update({{0, 0, 40, 40}}) == std::vector<int>{1});
    CHECK(tracker.update({{25, 0, 40, 40}}) == std::vector<int>{2});  // iou 15*40/(65*40) < 0.5
    CHECK_FALSE(tracker.alive(1));  // max_age 0: retired at its first miss
}

TEST_CASE("bad options are refused") {
    CHECK_THROWS_AS(IouTracker(TrackerOptions{0.0, 5}), facet::Error);
    CHECK_THROWS_AS(IouTracker(TrackerOptions{0.3, -1}), facet::Error);
}
