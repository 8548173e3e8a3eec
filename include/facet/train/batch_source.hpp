// facet/train/batch_source.hpp — BatchSource: what a Trainer draws batches from, epoch by epoch.
// An implementation must give the same batches for the same (epoch, batch index) whenever it is
// asked, so that a run resumed in the middle of an epoch sees exactly what an uninterrupted run
// saw. LoaderBatches adapts a BatchLoader (shuffled, augmented training data); DatasetBatches
// walks a Dataset in order without augmentation (validation and test data).
// Read next: train/validation.hpp.
#pragma once

#include <cstddef>

#include "facet/data/batch_loader.hpp"
#include "facet/data/dataset.hpp"

namespace facet {

/// A source of mini-batches (images (N, C, H, W) and labels), positioned by epoch and batch.
class BatchSource {
  public:
    virtual ~BatchSource() = default;
    /// Batches in one epoch (> 0).
    virtual std::size_t batches_per_epoch() const = 0;
    /// Positions the source at batch `first_batch` of `epoch` (0 for a fresh epoch).
    virtual void start_epoch(std::size_t epoch, std::size_t first_batch = 0) = 0;
    /// Moves the next batch of the current epoch into `batch`; false when the epoch is done.
    virtual bool next(Batch& batch) = 0;
};

/// A BatchLoader seen as a BatchSource (the loader is kept by reference and must outlive this).
class LoaderBatches : public BatchSource {
  public:
    explicit LoaderBatches(BatchLoader& loader) : loader_(loader) {}
    std::size_t batches_per_epoch() const override { return loader_.batches_per_epoch(); }
    void start_epoch(std::size_t epoch, std::size_t first_batch = 0) override {
        loader_.start_epoch(epoch, first_batch);
    }
    bool next(Batch& batch) override { return loader_.next(batch); }

  private:
    BatchLoader& loader_;
};

/// Every image of a Dataset once per epoch, in data set order, normalised and not augmented:
/// the source for validation and test data. The data set must outlive this.
class DatasetBatches : public BatchSource {
  public:
    /// Batches of `batch_size` images of `data`, standardised with `normalization` (the training
    /// set's); with shard_count > 1, this process's shard of each (BatchOptions::shard_index).
    DatasetBatches(const Dataset& data, Normalization normalization, std::size_t batch_size = 256,
                   std::size_t shard_index = 0, std::size_t shard_count = 1)
        : loader_(data, normalization, options(batch_size, shard_index, shard_count)) {}
    std::size_t batches_per_epoch() const override { return loader_.batches_per_epoch(); }
    void start_epoch(std::size_t epoch, std::size_t first_batch = 0) override {
        loader_.start_epoch(epoch, first_batch);
    }
    bool next(Batch& batch) override { return loader_.next(batch); }

  private:
    static BatchOptions options(std::size_t batch_size, std::size_t shard_index,
                                std::size_t shard_count) {
        BatchOptions o;
        o.batch_size = batch_size, o.shuffle = false, o.augment = false;
        o.shard_index = shard_index, o.shard_count = shard_count;
        o.prefetch = 0;  // read once per epoch, right after training: a thread would only wait
        return o;
    }
    BatchLoader loader_;
};

}  // namespace facet
