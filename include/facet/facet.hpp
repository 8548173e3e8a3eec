// facet/facet.hpp — the umbrella header: everything facet offers, in reading order.
// core -> kernels -> layers -> loss -> optim -> model -> data -> metrics -> report -> vision.
#pragma once

#include "facet/core/atomic_file.hpp"
#include "facet/core/crc32.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"

#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/prefetch.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd.hpp"

#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/registry.hpp"
#include "facet/layers/softmax.hpp"

#include "facet/loss/softmax_cross_entropy.hpp"

#include "facet/optim/adam.hpp"
#include "facet/optim/clip.hpp"
#include "facet/optim/optimizer.hpp"
#include "facet/optim/schedule.hpp"
#include "facet/optim/sgd.hpp"

#include "facet/model/gradient_check.hpp"
#include "facet/model/sequential.hpp"
#include "facet/model/serialize.hpp"

// The readers decode images with stb_image (Debian: libstb-dev); one translation unit of the
// program defines FACET_IMPLEMENT_STB before including facet/data/image.hpp (see there).
#if __has_include(<stb/stb_image.h>)
#include "facet/data/augment.hpp"
#include "facet/data/batch_loader.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/fer_csv.hpp"
#include "facet/data/image.hpp"
#include "facet/data/image_folder.hpp"
#include "facet/data/load.hpp"
#include "facet/data/synthetic_faces.hpp"
#endif

#include "facet/metrics/classification.hpp"

#include "facet/report/html.hpp"
#include "facet/report/png.hpp"
#include "facet/report/svg.hpp"

// The face detector interface, face crops and the tracker; the back-ends that link OpenCV or dlib
// (vision/opencv_detector.hpp, vision/dlib_detector.hpp, vision/detectors.hpp) are opt-in.
#include "facet/vision/align.hpp"
#include "facet/vision/face_detector.hpp"
#include "facet/vision/tracker.hpp"

// Optional, with Eigen: facet/core/eigen_interop.hpp (tensors as Eigen matrices).
