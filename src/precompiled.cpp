// src/precompiled.cpp — facet's layers, models, optimisers and loss for float and double,
// compiled once. facet is header-only, and every program that includes facet/facet.hpp otherwise
// compiles all of them in each of its translation units: the layer registry takes each layer's
// factory for both types, which pulls in every forward and backward pass and the SIMD kernels
// under them. A program that links the CMake target facet::precompiled gets FACET_PRECOMPILED
// defined, which turns the headers' `extern template` declarations on, and the definitions below.
// A layer of the program's own is compiled as usual; one missing here only costs compile time.
#include "facet/facet.hpp"

#ifndef FACET_PRECOMPILED
#error \
    "src/precompiled.cpp is compiled with FACET_PRECOMPILED defined (the target facet::precompiled)"
#endif

namespace facet {

template class Layer<float>;
template class Layer<double>;
template class MergeLayer<float>;
template class MergeLayer<double>;

template class Conv2d<float>;
template class Conv2d<double>;
template class GroupedConv2d<float>;
template class GroupedConv2d<double>;
template class Dense<float>;
template class Dense<double>;
template class BatchNorm<float>;
template class BatchNorm<double>;
template class BatchNorm2d<float>;
template class BatchNorm2d<double>;
template class BatchNorm1d<float>;
template class BatchNorm1d<double>;
template class ReLU<float>;
template class ReLU<double>;
template class LeakyReLU<float>;
template class LeakyReLU<double>;
template class ELU<float>;
template class ELU<double>;
template class MaxPool2d<float>;
template class MaxPool2d<double>;
template class AvgPool2d<float>;
template class AvgPool2d<double>;
template class GlobalAvgPool2d<float>;
template class GlobalAvgPool2d<double>;
template class Flatten<float>;
template class Flatten<double>;
template class Dropout<float>;
template class Dropout<double>;
template class Softmax<float>;
template class Softmax<double>;
template class Add<float>;
template class Add<double>;
template class Concat<float>;
template class Concat<double>;
template class QuantizedConv2d<float>;
template class QuantizedConv2d<double>;
template class QuantizedDense<float>;
template class QuantizedDense<double>;

template class Graph<float>;
template class Graph<double>;
template class Sequential<float>;
template class Sequential<double>;

template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;
template class SoftmaxCrossEntropy<float>;
template class SoftmaxCrossEntropy<double>;

}  // namespace facet
