// facet/facet.hpp — the umbrella header: everything facet offers, in reading order.
// core -> kernels -> layers -> loss -> optim -> model -> data -> train -> metrics -> report ->
// vision.
#pragma once

#include "facet/core/atomic_file.hpp"
#include "facet/core/communicator.hpp"
#include "facet/core/context.hpp"
#include "facet/core/convert.hpp"
#include "facet/core/crc32.hpp"
#include "facet/core/dtype.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/core/version.hpp"

#include "facet/kernels/bf16_gemm.hpp"
#include "facet/kernels/conv_plan.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/int8_gemm.hpp"
#include "facet/kernels/prefetch.hpp"
#include "facet/kernels/softmax_rows.hpp"
#include "facet/kernels/system_summary.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd.hpp"

#include "facet/layers/activations.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/avgpool2d.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/concat.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/global_avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/int8_quantization.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/layer_config.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/merge_layer.hpp"
#include "facet/layers/quantized_conv2d.hpp"
#include "facet/layers/quantized_dense.hpp"
#include "facet/layers/registry.hpp"
#include "facet/layers/softmax.hpp"

#include "facet/loss/softmax_cross_entropy.hpp"

#include "facet/optim/adam.hpp"
#include "facet/optim/clip.hpp"
#include "facet/optim/optimizer.hpp"
#include "facet/optim/schedule.hpp"
#include "facet/optim/sgd.hpp"

#include "facet/model/fold_batchnorm.hpp"
#include "facet/model/gradient_check.hpp"
#include "facet/model/graph.hpp"
#include "facet/model/interpolate.hpp"
#include "facet/model/provenance.hpp"
#include "facet/model/quantize.hpp"
#include "facet/model/residual_block.hpp"
#include "facet/model/sequential.hpp"
#include "facet/model/serialize.hpp"

#include "facet/export/onnx.hpp"
#include "facet/export/protobuf_writer.hpp"

// The readers decode images with stb_image (Debian: libstb-dev); one translation unit of the
// program defines FACET_IMPLEMENT_STB before including facet/data/image.hpp (see there).
#if __has_include(<stb/stb_image.h>)
#include "facet/data/augment.hpp"
#include "facet/data/batch_loader.hpp"
#include "facet/data/csv_dataset.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image.hpp"
#include "facet/data/image_folder.hpp"
#include "facet/data/load.hpp"
#include "facet/data/split.hpp"
#endif

#include "facet/train/batch_source.hpp"
#include "facet/train/best_model.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/checkpoint.hpp"
#include "facet/train/distillation.hpp"
#include "facet/train/early_stopping.hpp"
#include "facet/train/fisher.hpp"
#include "facet/train/mixup.hpp"
#include "facet/train/progress.hpp"
#include "facet/train/running_statistics.hpp"
#include "facet/train/signals.hpp"
#include "facet/train/trainer.hpp"
#include "facet/train/validation.hpp"
#include "facet/train/weight_anchor.hpp"
#include "facet/train/weight_average.hpp"
// The JSON-lines log is written with nlohmann/json (Debian: nlohmann-json3-dev).
#if __has_include(<nlohmann/json.hpp>)
#include "facet/train/json_log.hpp"
#endif

#include "facet/metrics/accuracy.hpp"
#include "facet/metrics/classification.hpp"

// Reports inline their pictures as PNG, encoded by stb_image_write (data/image.hpp).
#if __has_include(<stb/stb_image.h>)
#include "facet/report/html.hpp"
#include "facet/report/png.hpp"
#endif
#include "facet/report/svg.hpp"

// The face detector interface, face crops and the tracker; the back-ends that link OpenCV or dlib
// (vision/opencv_detector.hpp, vision/dlib_detector.hpp, vision/detectors.hpp) are opt-in.
#include "facet/vision/align.hpp"
#include "facet/vision/face_detector.hpp"
#include "facet/vision/tracker.hpp"

// Optional, with Eigen: facet/core/eigen_interop.hpp (tensors as Eigen matrices).
// Optional, with nlohmann/json: facet/metrics/classification_json.hpp (reports as JSON).
