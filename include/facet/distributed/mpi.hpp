// facet/distributed/mpi.hpp — data-parallel training on MPI (Debian: libopenmpi-dev,
// openmpi-bin). The one facet header that needs MPI: a program that includes it links MPI
// (CMake: find_package(MPI) and MPI::MPI_CXX); the core never does. MpiEnvironment starts and ends
// MPI; MpiCommunicator implements facet::Communicator (core/communicator.hpp) with a sum whose
// order of additions is fixed by facet, not by the MPI library:
//
//     facet::MpiEnvironment mpi(argc, argv);
//     facet::MpiCommunicator world;
//     options.communicator = &world;            // TrainerOptions
//     batch_options.shard_index = world.rank(), batch_options.shard_count = world.size();
//
// docs/distributed.md explains the design and its cost. Read next: train/trainer.hpp.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <cstdlib>
#include <span>
#include <type_traits>
#include <vector>

#include "facet/core/communicator.hpp"
#include "facet/core/error.hpp"

namespace facet {

/// Starts MPI (MPI_Init_thread, funneled: only the thread that made it calls MPI; facet's
/// worker threads never do) and finalises it when destroyed. One per process, in main().
class MpiEnvironment {
  public:
    /// Starts MPI with the command line (MPI may take its own arguments out of it).
    MpiEnvironment(int& argc, char**& argv) { start(&argc, &argv); }
    /// Without the command line (MPI reads what it needs from the environment).
    MpiEnvironment() { start(nullptr, nullptr); }
    MpiEnvironment(const MpiEnvironment&) = delete;
    MpiEnvironment& operator=(const MpiEnvironment&) = delete;
    ~MpiEnvironment() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
    /// Ends every process of the job with `status` (after an error on one process, the others
    /// would otherwise wait for it in the next collective call for ever).
    [[noreturn]] static void abort(int status) {
        MPI_Abort(MPI_COMM_WORLD, status);
        std::exit(status);
    }

  private:
    static void start(int* argc, char*** argv) {
        int provided = 0;
        check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
              "MPI_Init_thread failed");
    }
};

/// True when the environment shows an MPI launcher started this process (Open MPI's mpirun
/// sets OMPI_COMM_WORLD_SIZE; PMIx and Hydra launchers set PMIX_RANK or PMI_SIZE).
inline bool launched_by_mpi() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") ||
           std::getenv("PMI_SIZE");
}

/// facet::Communicator over an MPI communicator (MPI_COMM_WORLD by default).
///
/// sum() is a reduce-scatter followed by an all-gather, both written here: the buffer is cut
/// into size() chunks; chunk c of every process goes to rank c (MPI_Alltoallv), which adds the
/// copies in rank order 0, 1, ..., size() - 1; then every rank's summed chunk goes to every
/// process (MPI_Allgatherv). MPI only moves bytes, so the result does not depend on the
/// library's reduction algorithm (MPI_Allreduce may change its order with the message size,
/// the process layout or the library version). Each process sends and receives
/// 2 (size() - 1) / size() times the buffer, as a ring all-reduce does.
class MpiCommunicator : public Communicator {
  public:
    explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
        call(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        call(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    }
    using Communicator::broadcast;  // the float overload
    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void sum(std::span<float> values) override { sum_in_rank_order(values, MPI_FLOAT); }
    void sum(std::span<double> values) override { sum_in_rank_order(values, MPI_DOUBLE); }

    void broadcast(std::span<unsigned char> bytes, int root) override {
        if (size_ == 1 || bytes.empty()) return;
        check(bytes.size() <= static_cast<std::size_t>(INT_MAX),
              "MpiCommunicator::broadcast: ", bytes.size(),
              " bytes is more than one MPI message holds");
        call(MPI_Bcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, root, comm_),
             "MPI_Bcast");
    }

    /// Waits until every process has come here.
    void barrier() { call(MPI_Barrier(comm_), "MPI_Barrier"); }

  private:
    static void call(int status, const char* what) {
        check(status == MPI_SUCCESS, what, " failed with MPI error ", status);
    }

    template <typename T>
    void sum_in_rank_order(std::span<T> values, MPI_Datatype type) {
        if (size_ == 1 || values.empty()) return;
        const std::size_t n = values.size(), p = static_cast<std::size_t>(size_);
        check(n <= static_cast<std::size_t>(INT_MAX), "MpiCommunicator::sum: ", n,
              " values is more than one MPI message holds");
        // Chunk c is [n c / p, n (c + 1) / p): every process computes the same cut.
        counts_.resize(p), offsets_.resize(p), receive_counts_.resize(p),
            receive_offsets_.resize(p);
        for (std::size_t c = 0; c < p; ++c) {
            const std::size_t begin = n * c / p, end = n * (c + 1) / p;
            offsets_[c] = static_cast<int>(begin), counts_[c] = static_cast<int>(end - begin);
        }
        const auto mine = static_cast<std::size_t>(counts_[static_cast<std::size_t>(rank_)]);
        for (std::size_t r = 0; r < p; ++r)
            receive_counts_[r] = static_cast<int>(mine),
            receive_offsets_[r] = static_cast<int>(r * mine);
        std::vector<T>& copies = scratch<T>();
        copies.resize(mine * p);
        call(MPI_Alltoallv(values.data(), counts_.data(), offsets_.data(), type, copies.data(),
                           receive_counts_.data(), receive_offsets_.data(), type, comm_),
             "MPI_Alltoallv");
        T* own = values.data() + offsets_[static_cast<std::size_t>(rank_)];
        for (std::size_t i = 0; i < mine; ++i) {
            T total = copies[i];  // rank 0's copy, then ranks 1, 2, ... in order
            for (std::size_t r = 1; r < p; ++r) total += copies[r * mine + i];
            own[i] = total;
        }
        call(MPI_Allgatherv(MPI_IN_PLACE, 0, type, values.data(), counts_.data(), offsets_.data(),
                            type, comm_),
             "MPI_Allgatherv");
    }

    template <typename T>
    std::vector<T>& scratch() {
        if constexpr (std::is_same_v<T, float>)
            return float_scratch_;
        else
            return double_scratch_;
    }

    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
    std::vector<int> counts_, offsets_, receive_counts_, receive_offsets_;
    std::vector<float> float_scratch_;
    std::vector<double> double_scratch_;
};

}  // namespace facet
