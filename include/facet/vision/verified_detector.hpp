// facet/vision/verified_detector.hpp — a two-stage face detector: a fast detector proposes
// candidates at a low threshold (many faces, many false ones), and a second stage, typically a
// small CNN that sees each candidate's crop, keeps those it believes are faces. The first stage
// finds faces the detector alone would have doubted; the second removes what it wrongly found.
// No link dependency: the second stage is any callable.
// Read next: vision/detectors.hpp (the first stages).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

/// Greedy non-maximum suppression: `faces`, most confident first, without each face whose box
/// overlaps the box of a face kept before it at an IoU above `max_iou` (1: keeps every face).
inline std::vector<DetectedFace> suppress_overlaps(std::vector<DetectedFace> faces,
                                                   double max_iou) {
    std::vector<DetectedFace> kept;
    for (DetectedFace& face : faces) {
        bool apart = true;
        for (const DetectedFace& k : kept) apart = apart && iou(face.box, k.box) <= max_iou;
        if (apart) kept.push_back(std::move(face));
    }
    return kept;
}

/// `faces` in the order suppress_overlaps keeps them: those with sure[i] first, then the others,
/// each group by score, highest first (a stable order for equal scores).
inline std::vector<DetectedFace> rank_faces(std::vector<DetectedFace> faces,
                                            const std::vector<bool>& sure) {
    std::vector<std::size_t> order(faces.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return sure[a] != sure[b] ? bool(sure[a]) : faces[a].score > faces[b].score;
    });
    std::vector<DetectedFace> ranked;
    for (std::size_t i : order) ranked.push_back(std::move(faces[i]));
    return ranked;
}

/// The second stage: for each candidate found in `image`, the probability that it is a face.
using FaceVerifier =
    std::function<std::vector<float>(const GrayView& image, const std::vector<DetectedFace>&)>;

/// Keeps the candidates of `proposals` that `verifier` gives a probability of at least
/// `min_probability`; each kept face's score becomes that probability. Of faces whose boxes overlap
/// at an IoU above `max_iou`, only the most probable is kept (suppress_overlaps): a first stage at
/// a low threshold finds one face several times, at several scales, and the verifier can believe
/// each of them. Candidates the first stage itself scores at least `sure_score` rank ahead of the
/// others in that suppression (infinity: none), so that a doubtful box the verifier believes, such
/// as a face framed from nose to neck, cannot displace an overlapping one the first stage is sure
/// of. Its name() is the first stage's, whose boxes (and their framing) it returns unchanged.
class VerifiedFaceDetector : public FaceDetector {
  public:
    VerifiedFaceDetector(std::unique_ptr<FaceDetector> proposals, FaceVerifier verifier,
                         double min_probability, double max_iou = 1,
                         double sure_score = std::numeric_limits<double>::infinity())
        : proposals_(std::move(proposals)),
          verifier_(std::move(verifier)),
          min_probability_(min_probability),
          max_iou_(max_iou),
          sure_score_(sure_score) {
        check(proposals_ != nullptr && verifier_ != nullptr,
              "VerifiedFaceDetector: needs a first stage and a verifier");
        check(std::isfinite(min_probability) && min_probability >= 0 && min_probability <= 1,
              "VerifiedFaceDetector: min_probability must be in [0, 1], got ", min_probability);
        check(std::isfinite(max_iou) && max_iou >= 0 && max_iou <= 1,
              "VerifiedFaceDetector: max_iou must be in [0, 1], got ", max_iou);
        check(!std::isnan(sure_score), "VerifiedFaceDetector: sure_score is NaN");
    }

    std::string name() const override { return proposals_->name(); }

    std::vector<DetectedFace> detect(const GrayView& image) override {
        std::vector<DetectedFace> candidates = proposals_->detect(image);
        if (candidates.empty()) return candidates;
        const std::vector<float> p = verifier_(image, candidates);
        check(p.size() == candidates.size(), "VerifiedFaceDetector: the verifier gave ", p.size(),
              " probabilities for ", candidates.size(), " candidates");
        std::vector<DetectedFace> faces;
        std::vector<bool> sure;  // the first stage's own score at least sure_score_
        for (std::size_t i = 0; i < candidates.size(); ++i)
            if (p[i] >= min_probability_) {  // NaN is never >=: a broken verifier keeps nothing
                sure.push_back(candidates[i].score >= sure_score_);
                faces.push_back(std::move(candidates[i]));
                faces.back().score = p[i];
            }
        faces = rank_faces(std::move(faces), sure);
        return suppress_overlaps(std::move(faces), max_iou_);
    }

    /// The first stage (to change its options or ask its name).
    FaceDetector& proposals() { return *proposals_; }

  private:
    std::unique_ptr<FaceDetector> proposals_;
    FaceVerifier verifier_;
    double min_probability_;
    double max_iou_;
    double sure_score_;
};

}  // namespace facet::vision
