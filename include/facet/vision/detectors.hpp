// facet/vision/detectors.hpp — picks a face detector back-end by name at run time. OPT-IN: it
// includes the back-ends the program was built with, named by the compile definitions
// FACET_HAVE_OPENCV and FACET_HAVE_DLIB (CMake sets them on the targets that link OpenCV / dlib);
// without either, make_face_detector() says no detector was built in.
// Read next: vision/align.hpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

#if defined(FACET_HAVE_OPENCV)
#include "facet/vision/opencv_detector.hpp"
#endif
#if defined(FACET_HAVE_DLIB)
#include "facet/vision/dlib_detector.hpp"
#endif

namespace facet::vision {

/// The names make_face_detector() accepts in this build, the default first.
inline std::vector<std::string> available_face_detectors() {
    std::vector<std::string> names;
#if defined(FACET_HAVE_DLIB)
    names.push_back("dlib");
#endif
#if defined(FACET_HAVE_OPENCV)
    names.push_back("opencv");
    names.push_back("opencv-lbp");
#endif
    return names;
}

/// The detector this build uses when none is named: dlib when it is built in (it found the most
/// faces, and its eye-aligned crops kept the network's accuracy: docs/faces.md), else OpenCV's
/// Haar cascade; empty when there is none.
inline std::string default_face_detector() {
    const std::vector<std::string> names = available_face_detectors();
    return names.empty() ? std::string() : names.front();
}

/// A new detector: "opencv" (OpenCV's Haar cascade), "opencv-lbp" (OpenCV's LBP cascade) or
/// "dlib" (HOG + 68 landmarks); "" or "default" gives default_face_detector(). Throws
/// facet::Error for a name this build does not have, listing the ones it has.
inline std::unique_ptr<FaceDetector> make_face_detector(std::string name,
                                                        const DetectorOptions& options = {}) {
    if (name.empty() || name == "default") name = default_face_detector();
    static_cast<void>(options);  // unused when no back-end is built in
#if defined(FACET_HAVE_OPENCV)
    if (name == "opencv")
        return std::make_unique<OpenCvFaceDetector>(options, OpenCvFaceDetector::Cascade::haar);
    if (name == "opencv-lbp")
        return std::make_unique<OpenCvFaceDetector>(options, OpenCvFaceDetector::Cascade::lbp);
#endif
#if defined(FACET_HAVE_DLIB)
    if (name == "dlib") return std::make_unique<DlibFaceDetector>(options);
#endif
    std::string have;
    for (const std::string& n : available_face_detectors()) have += (have.empty() ? "" : ", ") + n;
    if (have.empty())
        throw Error(
            "no face detector was built in (build with OpenCV or dlib: Debian libopencv-dev "
            "opencv-data, libdlib-dev libdlib-data)");
    throw Error(
        facet::detail::concat("unknown face detector '", name, "' (this build has: ", have, ")"));
}

}  // namespace facet::vision
