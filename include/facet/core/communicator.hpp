// facet/core/communicator.hpp — Communicator: what data-parallel training needs from the
// processes it runs on (their number, this one's rank, a sum over all of them in a fixed order,
// a broadcast), with no transport named. The Trainer and Sequential::train_step speak to this
// interface only; facet/distributed/mpi.hpp implements it on MPI for the programs that opt in,
// so the core keeps no link dependency. Read next: distributed/mpi.hpp, train/trainer.hpp.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace facet {

/// What data-parallel training does with the buffers of a model (batch-norm running statistics),
/// which each process updates from its own shard. Either way they travel in the gradient buffer
/// of every step, so every process holds the same ones after each step.
enum class BufferSync {
    Average,  ///< the mean over the processes (the statistics of the whole global batch)
    RankZero  ///< rank 0's, as if only its shard had been seen
};

/// The processes of one data-parallel run. Every call is collective: every process makes the
/// same calls in the same order with buffers of the same length, or the run deadlocks.
class Communicator {
  public:
    virtual ~Communicator() = default;
    /// This process's number, 0 to size() - 1. Rank 0 writes the files of a run.
    virtual int rank() const = 0;
    /// How many processes train together (>= 1).
    virtual int size() const = 0;

    /// Replaces each element of `values` with its sum over all processes, added in rank order
    /// ((v0 + v1) + v2 ...): the same bits on every process, and from run to run for a given
    /// number of processes, whatever the transport's own reduction order would be.
    virtual void sum(std::span<float> values) = 0;
    /// sum() for doubles (counts and loss totals that must not lose digits).
    virtual void sum(std::span<double> values) = 0;
    /// Replaces `bytes` on every process with rank `root`'s (same length everywhere).
    virtual void broadcast(std::span<unsigned char> bytes, int root) = 0;

    /// Whether this is rank 0, the process that writes a run's files.
    bool is_root() const { return rank() == 0; }

    /// Rank `root`'s vector on every process; the others need not know its length beforehand.
    std::vector<unsigned char> broadcast_vector(std::vector<unsigned char> bytes, int root) {
        double length = rank() == root ? static_cast<double>(bytes.size()) : 0;
        sum(std::span<double>(&length, 1));  // only the root's length is non-zero
        bytes.resize(static_cast<std::size_t>(length));
        broadcast(bytes, root);
        return bytes;
    }
    /// Rank `root`'s floats on every process (same length everywhere).
    void broadcast(std::span<float> values, int root) {
        broadcast(std::span<unsigned char>(reinterpret_cast<unsigned char*>(values.data()),
                                           values.size_bytes()),
                  root);
    }
};

}  // namespace facet
