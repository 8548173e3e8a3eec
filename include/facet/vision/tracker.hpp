// facet/vision/tracker.hpp — follows boxes across the frames of a video and gives each object a
// stable id: every frame's detections are matched to the live tracks greedily by overlap
// (intersection over union, iou() in vision/face_detector.hpp, best pairs first); an unmatched
// detection starts a new track with a new id; a track that finds no detection is kept for `max_age`
// frames (a face the detector misses once keeps its id) and then retired. Dependency-free and
// deterministic. Read next: examples/fer/video.hpp, which runs detection, tracking and the emotion
// CNN on videos.
#pragma once

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

/// How the tracker matches and forgets.
struct TrackerOptions {
    double min_iou = 0.3;  ///< a detection continues a track only if they overlap at least this
    int max_age = 10;      ///< frames a track survives without a detection before it is retired
};

/// One followed object.
struct Track {
    int id = 0;      ///< stable for the track's life; ids are never reused
    Rect box;        ///< the box of its latest detection
    int misses = 0;  ///< frames since it was last detected (0: detected in the latest frame)
    long hits = 0;   ///< frames in which it was detected
};

/// Greedy IoU tracker: see the top of this header.
class IouTracker {
  public:
    /// A tracker with no tracks; the first id it gives is 1.
    explicit IouTracker(TrackerOptions options = {}) : options_(options) {
        check(options.min_iou > 0 && options.min_iou <= 1, "IouTracker: min_iou must be in (0, 1]");
        check(options.max_age >= 0, "IouTracker: max_age must be >= 0");
    }

    /// Takes one frame's detections and returns, for each of them (same order), its track id.
    /// Ties between equally good pairs go to the older track and the earlier detection, so the
    /// result depends only on the inputs.
    std::vector<int> update(const std::vector<Rect>& detections) {
        std::vector<std::tuple<double, std::size_t, std::size_t>> pairs;  // (iou, track, det)
        for (std::size_t t = 0; t < tracks_.size(); ++t)
            for (std::size_t d = 0; d < detections.size(); ++d)
                if (const double o = iou(tracks_[t].box, detections[d]); o >= options_.min_iou)
                    pairs.emplace_back(o, t, d);
        std::stable_sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
            return std::get<0>(a) > std::get<0>(b);
        });
        std::vector<int> ids(detections.size(), 0);
        std::vector<bool> track_taken(tracks_.size(), false);
        for (const auto& [overlap, t, d] : pairs) {
            if (track_taken[t] || ids[d] != 0) continue;
            track_taken[t] = true;
            ids[d] = tracks_[t].id;
            tracks_[t].box = detections[d], tracks_[t].misses = 0, ++tracks_[t].hits;
        }
        for (std::size_t t = 0; t < tracks_.size(); ++t)
            if (!track_taken[t]) ++tracks_[t].misses;
        std::erase_if(tracks_, [&](const Track& k) { return k.misses > options_.max_age; });
        for (std::size_t d = 0; d < detections.size(); ++d)
            if (ids[d] == 0) {
                ids[d] = next_id_++;
                tracks_.push_back({ids[d], detections[d], 0, 1});
            }
        return ids;
    }

    /// The live tracks, oldest first (those detected in the latest frame have misses == 0).
    const std::vector<Track>& tracks() const { return tracks_; }

    /// True while the track with this id is alive (not yet retired).
    bool alive(int id) const {
        return std::any_of(tracks_.begin(), tracks_.end(),
                           [id](const Track& k) { return k.id == id; });
    }

  private:
    TrackerOptions options_;
    std::vector<Track> tracks_;
    int next_id_ = 1;
};

}  // namespace facet::vision
