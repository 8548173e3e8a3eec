// detector_cli.hpp — the face-detector flag that fer predict, fer video and fer video-bench share:
// --detector-threshold, which moves the detector's confidence threshold (docs/faces.md).
#pragma once

#include <facet/core/error.hpp>
#include <facet/vision/face_detector.hpp>

#include <cmath>
#include <string>

#include "cli.hpp"

namespace fer {

/// Adds --detector-threshold to `cli`.
inline Cli& add_detector_threshold_option(Cli& cli) {
    cli.option("detector-threshold", "X",
               "the detector's confidence threshold (dlib: its score, 0 = dlib's own; opencv: the "
               "cascade's last-stage sum); lower finds more faces and more false ones; auto: "
               "the back-end's own",
               "auto");
    return cli;
}

/// Sets options.threshold from --detector-threshold ("auto" leaves the back-end's own).
inline void apply_detector_threshold(const Cli& cli, facet::vision::DetectorOptions& options) {
    if (cli.str("detector-threshold") == "auto") return;
    const double threshold = cli.number("detector-threshold");
    facet::check(std::isfinite(threshold), cli.command(),
                 ": --detector-threshold must be a finite number, got ", threshold);
    options.threshold = threshold;
}

}  // namespace fer
