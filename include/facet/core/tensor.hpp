// facet/core/tensor.hpp — facet::Shape and facet::Tensor<T>: an owning, 64-byte-aligned, dense
// array of up to four dimensions in NCHW order, with cheap views that share its storage.
// Element types are in core/dtype.hpp. Read next: core/eigen_interop.hpp (2-D views as Eigen
// matrices), kernels/gemm.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "facet/core/dtype.hpp"
#include "facet/core/error.hpp"
#include "facet/core/random.hpp"

namespace facet {

/// Up to four extents, outermost first: (N, C, H, W) for images, (N, F) for features.
class Shape {
  public:
    static constexpr int max_rank = 4;

    Shape() = default;
    Shape(std::initializer_list<std::size_t> dims) {
        check(dims.size() <= max_rank, "Shape: rank ", dims.size(), " exceeds ", max_rank);
        for (std::size_t d : dims) dims_[static_cast<std::size_t>(rank_++)] = d;
        (void)size();  // reject shapes whose element count overflows
    }

    int rank() const { return rank_; }
    std::size_t operator[](int i) const {
        check(i >= 0 && i < rank_, "Shape: axis ", i, " out of range for rank ", rank_);
        return dims_[static_cast<std::size_t>(i)];
    }
    /// Number of elements (1 for rank 0), checked against overflow.
    std::size_t size() const {
        std::size_t n = 1;
        for (int i = 0; i < rank_; ++i)
            n = checked_mul(n, dims_[static_cast<std::size_t>(i)], "Shape");
        return n;
    }
    /// Product of the extents after the first (the per-sample size of a batch).
    std::size_t inner_size() const {
        return rank_ == 0 ? 1 : size() / std::max<std::size_t>(dims_[0], 1);
    }

    /// The same shape with the outermost extent replaced (used to re-batch a per-sample shape).
    Shape with_outer(std::size_t n) const {
        Shape s = *this;
        if (s.rank_ == 0) s.rank_ = 1;
        s.dims_[0] = n;
        return s;
    }

    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)])
                return false;
        return true;
    }
    friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

    std::string str() const {
        std::string s = "(";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(dims_[static_cast<std::size_t>(i)]);
        }
        return s + ")";
    }

  private:
    std::array<std::size_t, max_rank> dims_{};
    int rank_ = 0;
};

/// Allocation alignment: one cache line, and the width of an AVX-512 register.
inline constexpr std::size_t tensor_alignment = 64;

namespace detail {
template <typename T>
std::shared_ptr<T[]> allocate_aligned(std::size_t n) {
    if (n == 0) return {};
    checked_mul(n, sizeof(T), "Tensor allocation");
    T* p = static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t{tensor_alignment}));
    return std::shared_ptr<T[]>(
        p, [](T* q) { ::operator delete[](q, std::align_val_t{tensor_alignment}); });
}
}  // namespace detail

/// A dense row-major array of T with up to four dimensions. T is float or double for computing;
/// bf16, f16 and std::int8_t tensors store weights compactly (core/convert.hpp converts), and
/// only float and double tensors are drawn at random or used by layers.
///
/// Copying a Tensor copies its elements (value semantics, like Eigen's matrices); moving it is
/// free. reshape(), slice() and view() return tensors that *share* the storage, so writes through
/// a view are seen by the original. Storage is 64-byte aligned and zero-initialised.
template <typename T>
class Tensor {
    static_assert(is_tensor_element_v<T>,
                  "facet::Tensor holds float, double, bf16, f16 or std::int8_t");

  public:
    using value_type = T;

    Tensor() = default;
    explicit Tensor(const Shape& shape) { resize(shape); }
    Tensor(const Shape& shape, T value) : Tensor(shape) { fill(value); }

    Tensor(const Tensor& other) {
        if (other.is_default()) return;  // its rank-0 shape would otherwise mean one element
        resize(other.shape_);
        if (size_) std::memcpy(data_, other.data_, size_ * sizeof(T));
    }
    Tensor& operator=(const Tensor& other) {
        if (other.is_default()) {
            Tensor empty;
            swap(empty);
        } else if (this != &other) {
            resize(other.shape_);
            if (size_) std::memmove(data_, other.data_, size_ * sizeof(T));
        }
        return *this;
    }
    Tensor(Tensor&& other) noexcept { swap(other); }
    Tensor& operator=(Tensor&& other) noexcept {
        Tensor tmp(std::move(other));
        swap(tmp);
        return *this;
    }
    void swap(Tensor& o) noexcept {
        std::swap(storage_, o.storage_);
        std::swap(data_, o.data_);
        std::swap(shape_, o.shape_);
        std::swap(strides_, o.strides_);
        std::swap(size_, o.size_);
        std::swap(capacity_, o.capacity_);
    }

    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::size_t dim(int i) const { return shape_[i]; }
    std::size_t stride(int i) const {
        check(i >= 0 && i < rank(), "Tensor::stride: axis ", i, " out of range");
        return strides_[static_cast<std::size_t>(i)];
    }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    T* data() { return data_; }
    const T* data() const { return data_; }
    T* begin() { return data_; }
    T* end() { return data_ + size_; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + size_; }

    /// True when this tensor and `other` point into the same allocation.
    bool shares_storage_with(const Tensor& other) const {
        return storage_ && storage_ == other.storage_;
    }

    /// Changes the shape. Keeps the allocation when it is large enough (layers call this on every
    /// batch), otherwise allocates fresh zeroed storage. A view may not grow past its allocation.
    void resize(const Shape& shape) {
        const std::size_t n = shape.size();
        if (n > capacity_) {
            check(!storage_ || storage_.use_count() == 1,
                  "Tensor::resize: cannot grow a view or a ", "tensor with live views from ", size_,
                  " to ", n, " elements");
            storage_ = detail::allocate_aligned<T>(n);
            data_ = storage_.get();
            capacity_ = n;
            if (n) std::memset(static_cast<void*>(data_), 0, n * sizeof(T));
        }
        shape_ = shape;
        size_ = n;
        compute_strides();
    }

    /// A view with another shape of the same element count; no copy.
    Tensor reshape(const Shape& shape) const {
        check(shape.size() == size_, "Tensor::reshape: ", shape_.str(), " has ", size_,
              " elements, ", shape.str(), " needs ", shape.size());
        Tensor v = view();
        v.shape_ = shape;
        v.compute_strides();
        return v;
    }

    /// A view of the same elements and shape; no copy.
    Tensor view() const {
        Tensor v;
        v.storage_ = storage_;
        v.data_ = data_;
        v.shape_ = shape_;
        v.strides_ = strides_;
        v.size_ = size_;
        v.capacity_ = size_;
        return v;
    }

    /// A view of items [begin, end) along the outermost axis (e.g. a sub-batch); no copy.
    Tensor slice(std::size_t begin, std::size_t end) const {
        check(rank() >= 1, "Tensor::slice: rank-0 tensor");
        check(begin <= end && end <= shape_[0], "Tensor::slice: [", begin, ", ", end,
              ") out of range for outer extent ", shape_[0]);
        Tensor v = view();
        v.shape_ = shape_.with_outer(end - begin);
        v.data_ = data_ + begin * strides_[0];
        v.size_ = v.shape_.size();
        v.capacity_ = v.size_;
        return v;
    }

    /// Element access by index along each axis: t(n, c, h, w), t(n, f), t(i).
    template <typename... Idx>
    T& operator()(Idx... idx) {
        return data_[offset(static_cast<std::size_t>(idx)...)];
    }
    template <typename... Idx>
    const T& operator()(Idx... idx) const {
        return data_[offset(static_cast<std::size_t>(idx)...)];
    }
    /// Flat access to the i-th element in row-major order.
    T& operator[](std::size_t i) {
        assert(i < size_);
        return data_[i];
    }
    const T& operator[](std::size_t i) const {
        assert(i < size_);
        return data_[i];
    }

    void fill(T value) { std::fill(data_, data_ + size_, value); }
    void zero() { fill(T{}); }
    void fill_uniform(Rng& rng, double lo, double hi) {
        static_assert(std::is_floating_point_v<T>, "fill_uniform: float or double tensors only");
        for (std::size_t i = 0; i < size_; ++i) data_[i] = static_cast<T>(rng.uniform(lo, hi));
    }
    void fill_normal(Rng& rng, double mean, double stddev) {
        static_assert(std::is_floating_point_v<T>, "fill_normal: float or double tensors only");
        for (std::size_t i = 0; i < size_; ++i) data_[i] = static_cast<T>(rng.normal(mean, stddev));
    }

  private:
    /// True for a default-constructed tensor: rank 0 but no element (a Tensor(Shape{}) holds one).
    bool is_default() const { return shape_.rank() == 0 && size_ == 0; }

    template <typename... Idx>
    std::size_t offset(Idx... idx) const {
        static_assert(sizeof...(Idx) <= Shape::max_rank, "too many indices");
        assert(static_cast<int>(sizeof...(Idx)) == rank());
        const std::size_t ids[] = {idx...};
        std::size_t off = 0;
        for (std::size_t i = 0; i < sizeof...(Idx); ++i) {
            assert(ids[i] < shape_[static_cast<int>(i)]);
            off += ids[i] * strides_[i];
        }
        return off;
    }

    void compute_strides() {
        std::size_t s = 1;
        for (int i = shape_.rank() - 1; i >= 0; --i) {
            strides_[static_cast<std::size_t>(i)] = s;
            s *= shape_[i];
        }
    }

    std::shared_ptr<T[]> storage_;
    T* data_ = nullptr;
    Shape shape_;
    std::array<std::size_t, Shape::max_rank> strides_{};
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

}  // namespace facet
