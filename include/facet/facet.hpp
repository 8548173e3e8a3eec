// facet/facet.hpp — the umbrella header: everything facet offers, in reading order.
#pragma once

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
