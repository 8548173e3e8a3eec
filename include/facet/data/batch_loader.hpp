// facet/data/batch_loader.hpp — mini-batches for training and evaluation: each epoch visits every
// sample of a Dataset once in a seeded shuffled order, and each batch is a Tensor<float>
// (N, 1, H, W) of normalised pixels ((x / 255 - mean) / std, mean and std from the training set)
// with its labels, augmented when training. A background thread prepares the next batches while
// the trainer works; what it produces depends only on (seed, epoch, batch index), never on timing,
// so a run resumed at (epoch, batch) sees exactly the batches an uninterrupted run would.
// Read next: metrics/classification.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/data/augment.hpp"
#include "facet/data/dataset.hpp"

namespace facet {

/// The per-pixel standardisation the network sees: x = (pixel / 255 - mean) / stddev. Computed
/// once on the training set and stored with the model, so evaluation and prediction use the same
/// numbers.
struct Normalization {
    float mean = 0.0f;
    float stddev = 1.0f;

    /// Mean and standard deviation of pixel / 255 over every pixel of `data` (in double).
    static Normalization of(const Dataset& data) {
        check(!data.pixels.empty(), "Normalization::of: data set '", data.split, "' is empty");
        double sum = 0, sum_sq = 0;
        for (std::uint8_t p : data.pixels) {
            sum += p;
            sum_sq += static_cast<double>(p) * p;
        }
        const double n = static_cast<double>(data.pixels.size());
        const double mean = sum / n;
        const double variance = std::max(sum_sq / n - mean * mean, 0.0);
        Normalization z;
        z.mean = static_cast<float>(mean / 255.0);
        // A constant image set would give 0; keep 1 so normalising never divides by zero.
        z.stddev = variance > 0 ? static_cast<float>(std::sqrt(variance) / 255.0) : 1.0f;
        return z;
    }

    /// Standardises n values already in [0, 1], in place.
    void apply(float* values, std::size_t n) const {
        check(stddev > 0, "Normalization: stddev must be > 0, got ", stddev);
        const float inverse = 1.0f / stddev;
        for (std::size_t i = 0; i < n; ++i) values[i] = (values[i] - mean) * inverse;
    }
    /// Standardises n bytes into floats.
    void apply(const std::uint8_t* pixels, float* out, std::size_t n) const {
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(pixels[i]) / 255.0f;
        apply(out, n);
    }
};

/// How a BatchLoader forms batches.
struct BatchOptions {
    std::size_t batch_size = 64;
    bool shuffle = true;     ///< a new seeded order every epoch (false: data set order)
    bool drop_last = false;  ///< drop the last batch when it is smaller than batch_size
    bool augment = false;    ///< apply `augmentation` to every sample (training only)
    AugmentConfig augmentation;
    std::uint64_t seed = 42;
    std::size_t prefetch = 2;  ///< batches prepared ahead by the worker thread (0: no thread)
    /// Data-parallel training: each of `shard_count` processes takes the part `shard_index` of
    /// every batch, so batch_size is the global batch and the shards of one batch are disjoint.
    std::size_t shard_index = 0, shard_count = 1;
};

/// One mini-batch.
struct Batch {
    Tensor<float> images;              ///< (N, 1, H, W), normalised
    std::vector<int> labels;           ///< N labels
    std::vector<std::size_t> indices;  ///< which samples of the data set, in batch order
    std::size_t epoch = 0;
    std::size_t index = 0;  ///< position of this batch within its epoch
    std::size_t size() const { return labels.size(); }
};

namespace detail {
/// A well-mixed 64-bit value from several (splitmix64 finaliser), for independent seeds.
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b, std::uint64_t c = 0) {
    std::uint64_t z = a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (c * 0xc2b2ae3d27d4eb4fULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
}  // namespace detail

/// Iterates a Dataset in mini-batches, epoch by epoch. The data set must outlive the loader.
///
///     BatchLoader loader(train, Normalization::of(train), options);
///     for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
///         loader.start_epoch(epoch);           // or start_epoch(epoch, batch) to resume
///         Batch batch;
///         while (loader.next(batch)) train_step(batch.images, batch.labels);
///     }
///
/// An exception while preparing a batch in the worker thread is re-thrown by next().
class BatchLoader {
  public:
    /// A loader over `data` (kept by reference); an Error for an empty or inconsistent data set,
    /// batch_size 0, or augmentation settings out of range.
    BatchLoader(const Dataset& data, Normalization normalization, BatchOptions options = {})
        : data_(data), normalization_(normalization), options_(std::move(options)) {
        data_.validate();
        check(options_.batch_size > 0, "BatchLoader: batch_size must be > 0");
        check(!data_.empty(), "BatchLoader: data set '", data_.split, "' is empty");
        check(normalization_.stddev > 0, "BatchLoader: normalisation stddev must be > 0");
        check(options_.shard_count > 0 && options_.shard_index < options_.shard_count,
              "BatchLoader: shard ", options_.shard_index, " of ", options_.shard_count);
        if (options_.augment) options_.augmentation.validate();
    }
    BatchLoader(const BatchLoader&) = delete;
    BatchLoader& operator=(const BatchLoader&) = delete;

    /// Stops and joins the worker thread.
    ~BatchLoader() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        work_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

    /// Batches in one epoch (the partial last batch counted unless drop_last).
    std::size_t batches_per_epoch() const {
        const std::size_t n = data_.size(), b = options_.batch_size;
        return options_.drop_last ? n / b : (n + b - 1) / b;
    }
    /// The standardisation applied to every batch (store it with the model).
    const Normalization& normalization() const { return normalization_; }
    /// The options the loader was built with.
    const BatchOptions& options() const { return options_; }

    /// The order in which epoch `epoch` visits the samples: a pure function of seed and epoch.
    std::vector<std::size_t> epoch_order(std::size_t epoch) const {
        std::vector<std::size_t> order(data_.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        if (!options_.shuffle) return order;
        Rng rng(detail::mix_seed(options_.seed, epoch, 1));
        for (std::size_t i = order.size(); i > 1; --i)  // Fisher–Yates
            std::swap(order[i - 1], order[static_cast<std::size_t>(rng.below(i))]);
        return order;
    }

    /// Builds batch `index` of epoch `epoch` given that epoch's order (this shard's part of it:
    /// [n k / shards, n (k + 1) / shards) of the batch's n samples, which may be empty). Sample
    /// i of the data set is augmented with an Rng seeded by (seed, epoch, i), so its batch
    /// position and the thread or process that prepares it do not matter.
    Batch make_batch(std::size_t epoch, std::size_t index,
                     const std::vector<std::size_t>& order) const {
        check(index < batches_per_epoch(), "BatchLoader: batch ", index, " out of range (",
              batches_per_epoch(), " per epoch)");
        const std::size_t global_begin = index * options_.batch_size;
        const std::size_t n =
            std::min(global_begin + options_.batch_size, order.size()) - global_begin;
        const std::size_t begin = global_begin + n * options_.shard_index / options_.shard_count;
        const std::size_t end =
            global_begin + n * (options_.shard_index + 1) / options_.shard_count;
        const std::size_t pixels = data_.image_size();
        Batch batch;
        batch.epoch = epoch;
        batch.index = index;
        batch.images.resize(Shape{end - begin, 1, data_.height, data_.width});
        for (std::size_t k = begin; k < end; ++k) {
            const std::size_t sample = order[k];
            float* out = batch.images.data() + (k - begin) * pixels;
            if (options_.augment) {
                Rng rng(detail::mix_seed(options_.seed, epoch, sample + 2));
                augment_image(data_.image(sample), data_.height, data_.width, out,
                              options_.augmentation, rng);
                normalization_.apply(out, pixels);
            } else {
                normalization_.apply(data_.image(sample), out, pixels);
            }
            const int label = data_.labels[sample];
            check(label >= 0 && label < data_.num_classes(), "BatchLoader: sample ", sample,
                  " of '", data_.split, "' has label ", label, " outside [0, ", data_.num_classes(),
                  ") (was the data set changed while loading?)");
            batch.labels.push_back(label);
            batch.indices.push_back(sample);
        }
        return batch;
    }

    /// Positions the loader at batch `first_batch` of `epoch` (0 for a fresh epoch; a later batch
    /// to resume an interrupted run). Batches prepared for an earlier position are discarded.
    void start_epoch(std::size_t epoch, std::size_t first_batch = 0) {
        check(first_batch <= batches_per_epoch(), "BatchLoader::start_epoch: batch ", first_batch,
              " beyond the ", batches_per_epoch(), " batches of an epoch");
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++generation_;
            ready_.clear();
            failure_ = nullptr;
            epoch_ = epoch;
            next_to_prepare_ = first_batch;
            next_to_deliver_ = first_batch;
            started_ = true;
        }
        if (options_.prefetch > 0 && !worker_.joinable()) worker_ = std::thread([this] { work(); });
        work_.notify_all();
    }

    /// Moves the next batch of the current epoch into `batch`; false when the epoch is done.
    bool next(Batch& batch) {
        std::unique_lock<std::mutex> lock(mutex_);
        check(started_, "BatchLoader::next: call start_epoch first");
        if (next_to_deliver_ >= batches_per_epoch()) return false;
        if (options_.prefetch == 0) {
            const std::size_t epoch = epoch_, index = next_to_deliver_++;
            lock.unlock();
            batch = make_batch(epoch, index, order_for(epoch));
            return true;
        }
        ready_changed_.wait(lock, [&] { return !ready_.empty() || failure_; });
        if (ready_.empty()) {
            std::exception_ptr failure = failure_;
            failure_ = nullptr;
            next_to_deliver_ = batches_per_epoch();  // the epoch cannot continue
            std::rethrow_exception(failure);
        }
        batch = std::move(ready_.front());
        ready_.pop_front();
        ++next_to_deliver_;
        work_.notify_all();
        return true;
    }

  private:
    /// The cached order of `epoch` (used by whichever single thread prepares batches).
    const std::vector<std::size_t>& order_for(std::size_t epoch) {
        if (order_epoch_ != epoch || order_.empty()) {
            order_ = epoch_order(epoch);
            order_epoch_ = epoch;
        }
        return order_;
    }

    /// The worker: prepares batches in order, at most `prefetch` ahead of the consumer.
    void work() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            work_.wait(lock, [&] {
                return stopping_ || (!failure_ && next_to_prepare_ < batches_per_epoch() &&
                                     ready_.size() < options_.prefetch);
            });
            if (stopping_) return;
            const std::uint64_t generation = generation_;
            const std::size_t epoch = epoch_, index = next_to_prepare_++;
            lock.unlock();
            Batch batch;
            std::exception_ptr failure;
            try {
                batch = make_batch(epoch, index, order_for(epoch));
            } catch (...) {
                failure = std::current_exception();
            }
            lock.lock();
            if (generation != generation_) continue;  // start_epoch moved on meanwhile
            if (failure)
                failure_ = failure;
            else
                ready_.push_back(std::move(batch));
            ready_changed_.notify_all();
        }
    }

    const Dataset& data_;
    Normalization normalization_;
    BatchOptions options_;

    std::vector<std::size_t> order_;
    std::size_t order_epoch_ = 0;

    std::mutex mutex_;
    std::condition_variable work_;           // the worker waits here for room or a new epoch
    std::condition_variable ready_changed_;  // the consumer waits here for a batch
    std::deque<Batch> ready_;
    std::exception_ptr failure_;
    std::uint64_t generation_ = 0;
    std::size_t epoch_ = 0;
    std::size_t next_to_prepare_ = 0;
    std::size_t next_to_deliver_ = 0;
    bool started_ = false;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace facet
