// Tests of facet::Shape and facet::Tensor (core/tensor.hpp): shapes and strides, views that
// share storage, deep copies, moves, resize keeping its allocation, 64-byte alignment, seeded
// fills, overflow rejection, and the Eigen view of core/eigen_interop.hpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "facet/core/eigen_interop.hpp"
#include "facet/core/tensor.hpp"

using facet::Shape;
using facet::Tensor;

TEST_CASE("Shape: rank, extents, size, equality") {
    const Shape s{2, 3, 4, 5};
    CHECK(s.rank() == 4);
    CHECK(s[0] == 2);
    CHECK(s[3] == 5);
    CHECK(s.size() == 120);
    CHECK(s.inner_size() == 60);
    CHECK(s.str() == "(2, 3, 4, 5)");
    CHECK(s == Shape{2, 3, 4, 5});
    CHECK(s != Shape{2, 3, 5, 4});
    CHECK(s != Shape{2, 3, 4});
    CHECK(s.with_outer(7) == Shape{7, 3, 4, 5});
    CHECK(Shape{}.size() == 1);  // rank 0: a scalar
    CHECK_THROWS_AS((void)s[4], facet::Error);
    CHECK_THROWS_AS((void)s[-1], facet::Error);
    CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5}), facet::Error);
}

TEST_CASE("Shape rejects extents whose product overflows size_t") {
    const std::size_t big = std::numeric_limits<std::size_t>::max() / 2;
    CHECK_THROWS_WITH_AS((Shape{big, 4}), doctest::Contains("overflows"), facet::Error);
    CHECK_THROWS_AS((Tensor<float>(Shape{big, 3, 1})), facet::Error);
    // The element count fits, the byte count does not: rejected before allocating.
    CHECK_THROWS_AS((Tensor<double>(Shape{std::numeric_limits<std::size_t>::max() / 4})),
                    facet::Error);
}

TEST_CASE_TEMPLATE("Tensor: zero-initialised, row-major strides, element access", T, float,
                   double) {
    Tensor<T> t(Shape{2, 3, 4, 5});
    CHECK(t.size() == 120);
    CHECK(t.rank() == 4);
    CHECK(t.stride(0) == 60);
    CHECK(t.stride(1) == 20);
    CHECK(t.stride(2) == 5);
    CHECK(t.stride(3) == 1);
    CHECK_THROWS_AS((void)t.stride(4), facet::Error);
    for (T x : t) CHECK(x == T(0));
    t(1, 2, 3, 4) = T(7);
    CHECK(t.data()[60 + 40 + 15 + 4] == T(7));
    CHECK(t[119] == T(7));
    Tensor<T> filled(Shape{3, 2}, T(1.5));
    for (T x : filled) CHECK(x == T(1.5));
}

TEST_CASE("Tensor storage is 64-byte aligned for every size") {
    for (std::size_t n : {1u, 3u, 17u, 64u, 1000u, 4099u}) {
        Tensor<float> f(Shape{n});
        Tensor<double> d(Shape{n, 3});
        CHECK(reinterpret_cast<std::uintptr_t>(f.data()) % 64 == 0);
        CHECK(reinterpret_cast<std::uintptr_t>(d.data()) % 64 == 0);
    }
}

TEST_CASE("reshape, view and slice share storage; writes are seen both ways") {
    Tensor<float> t(Shape{4, 2, 3});
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i);

    Tensor<float> r = t.reshape(Shape{8, 3});
    CHECK(r.shares_storage_with(t));
    CHECK(r.data() == t.data());
    CHECK(r(5, 2) == 17.0f);
    r(0, 0) = -1.0f;
    CHECK(t(0, 0, 0) == -1.0f);
    CHECK_THROWS_WITH_AS(t.reshape(Shape{5, 5}), doctest::Contains("reshape"), facet::Error);

    Tensor<float> s = t.slice(1, 3);
    CHECK(s.shape() == Shape{2, 2, 3});
    CHECK(s.shares_storage_with(t));
    CHECK(s.data() == t.data() + 6);
    CHECK(s(0, 0, 0) == 6.0f);
    s(1, 1, 2) = 100.0f;
    CHECK(t(2, 1, 2) == 100.0f);
    CHECK(t.slice(4, 4).empty());
    CHECK_THROWS_AS(t.slice(3, 5), facet::Error);
    CHECK_THROWS_AS(t.slice(3, 2), facet::Error);

    Tensor<float> v = t.view();
    v[1] = 42.0f;
    CHECK(t[1] == 42.0f);
}

TEST_CASE("copies are deep; moves transfer the storage") {
    Tensor<double> a(Shape{3, 4}, 2.0);
    Tensor<double> b = a;
    CHECK_FALSE(b.shares_storage_with(a));
    CHECK(b.shape() == a.shape());
    b[0] = 5.0;
    CHECK(a[0] == 2.0);

    Tensor<double> c(Shape{1});
    c = a;
    CHECK(c.shape() == a.shape());
    CHECK(c[11] == 2.0);
    CHECK_FALSE(c.shares_storage_with(a));

    const double* storage = a.data();
    Tensor<double> moved = std::move(a);
    CHECK(moved.data() == storage);
    CHECK(moved.size() == 12);
    Tensor<double> assigned;
    assigned = std::move(moved);
    CHECK(assigned.data() == storage);

    // A copy of a slice holds only the slice's elements.
    Tensor<double> sliced = assigned.slice(1, 2);
    sliced[0] = 9.0;
    const Tensor<double> copy_of_slice = sliced;
    CHECK(copy_of_slice.size() == 4);
    CHECK(copy_of_slice[0] == 9.0);

    // Copying an empty (default) tensor gives an empty tensor.
    const Tensor<double> empty;
    const Tensor<double> empty_copy = empty;
    CHECK(empty_copy.size() == 0);
    CHECK(empty_copy.empty());
    Tensor<double> overwritten(Shape{2, 2}, 1.0);
    overwritten = empty;
    CHECK(overwritten.empty());
    // A rank-0 tensor made from Shape{} is a scalar: one element, copied like any other.
    Tensor<double> scalar(Shape{}, 4.0);
    const Tensor<double> scalar_copy = scalar;
    CHECK(scalar_copy.size() == 1);
    CHECK(scalar_copy[0] == 4.0);
}

TEST_CASE("resize keeps the allocation when it fits and refuses to grow a view") {
    Tensor<float> t(Shape{8, 16});
    const float* storage = t.data();
    t.resize(Shape{4, 16});
    CHECK(t.data() == storage);
    CHECK(t.size() == 64);
    t.resize(Shape{2, 64});  // back up to the original capacity: still no allocation
    CHECK(t.data() == storage);
    CHECK(t.stride(0) == 64);
    t.resize(Shape{3, 64});  // larger: fresh, zeroed storage
    CHECK(t.size() == 192);
    for (float x : t) CHECK(x == 0.0f);

    Tensor<float> v = t.slice(0, 1);
    CHECK_THROWS_WITH_AS(v.resize(Shape{2, 64}), doctest::Contains("view"), facet::Error);
    CHECK_THROWS_AS(t.resize(Shape{4, 64}), facet::Error);  // t has a live view
    v.resize(Shape{32});                                    // shrinking a view is fine
    CHECK(v.shares_storage_with(t));
}

TEST_CASE("seeded fills are reproducible") {
    facet::Rng r1(123), r2(123), r3(124);
    Tensor<float> a(Shape{100}), b(Shape{100}), c(Shape{100});
    a.fill_uniform(r1, -1, 1);
    b.fill_uniform(r2, -1, 1);
    c.fill_uniform(r3, -1, 1);
    bool same_ab = true, same_ac = true, in_range = true;
    for (std::size_t i = 0; i < 100; ++i) {
        same_ab &= a[i] == b[i];
        same_ac &= a[i] == c[i];
        in_range &= a[i] >= -1.0f && a[i] < 1.0f;
    }
    CHECK(same_ab);
    CHECK_FALSE(same_ac);
    CHECK(in_range);

    facet::Rng n1(5), n2(5);
    Tensor<double> x(Shape{1000}), y(Shape{1000});
    x.fill_normal(n1, 3.0, 2.0);
    y.fill_normal(n2, 3.0, 2.0);
    double mean = 0;
    for (std::size_t i = 0; i < 1000; ++i) {
        CHECK(x[i] == y[i]);
        mean += x[i] / 1000;
    }
    CHECK(mean == doctest::Approx(3.0).epsilon(0.05));  // 4.7 standard errors of slack
    x.zero();
    for (double v : x) CHECK(v == 0.0);
}

TEST_CASE("as_eigen views a tensor as a rows x inner matrix without copying") {
    Tensor<float> t(Shape{2, 3, 2});
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i);
    auto m = facet::as_eigen(t);
    CHECK(m.rows() == 2);
    CHECK(m.cols() == 6);
    CHECK(m(1, 4) == 10.0f);
    CHECK(m.data() == t.data());
    m(0, 5) = -3.0f;
    CHECK(t(0, 2, 1) == -3.0f);
    const Tensor<float>& ct = t;
    CHECK(facet::as_eigen(ct).sum() == doctest::Approx(66.0 - 5.0 - 3.0));
    CHECK_THROWS_AS(facet::as_eigen(Tensor<float>()), facet::Error);
}
