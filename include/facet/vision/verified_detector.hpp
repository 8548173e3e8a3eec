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
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

/// The second stage: for each candidate found in `image`, the probability that it is a face.
using FaceVerifier =
    std::function<std::vector<float>(const GrayView& image, const std::vector<DetectedFace>&)>;

/// Keeps the candidates of `proposals` that `verifier` gives a probability of at least
/// `min_probability`; each kept face's score becomes that probability. Its name() is the first
/// stage's, whose boxes (and their framing) it returns unchanged.
class VerifiedFaceDetector : public FaceDetector {
  public:
    VerifiedFaceDetector(std::unique_ptr<FaceDetector> proposals, FaceVerifier verifier,
                         double min_probability)
        : proposals_(std::move(proposals)),
          verifier_(std::move(verifier)),
          min_probability_(min_probability) {
        check(proposals_ != nullptr && verifier_ != nullptr,
              "VerifiedFaceDetector: needs a first stage and a verifier");
        check(std::isfinite(min_probability) && min_probability >= 0 && min_probability <= 1,
              "VerifiedFaceDetector: min_probability must be in [0, 1], got ", min_probability);
    }

    std::string name() const override { return proposals_->name(); }

    std::vector<DetectedFace> detect(const GrayView& image) override {
        std::vector<DetectedFace> candidates = proposals_->detect(image);
        if (candidates.empty()) return candidates;
        const std::vector<float> p = verifier_(image, candidates);
        check(p.size() == candidates.size(), "VerifiedFaceDetector: the verifier gave ", p.size(),
              " probabilities for ", candidates.size(), " candidates");
        std::vector<DetectedFace> faces;
        for (std::size_t i = 0; i < candidates.size(); ++i)
            if (p[i] >= min_probability_) {  // NaN is never >=: a broken verifier keeps nothing
                faces.push_back(std::move(candidates[i]));
                faces.back().score = p[i];
            }
        std::stable_sort(
            faces.begin(), faces.end(),
            [](const DetectedFace& a, const DetectedFace& b) { return a.score > b.score; });
        return faces;
    }

    /// The first stage (to change its options or ask its name).
    FaceDetector& proposals() { return *proposals_; }

  private:
    std::unique_ptr<FaceDetector> proposals_;
    FaceVerifier verifier_;
    double min_probability_;
};

}  // namespace facet::vision
