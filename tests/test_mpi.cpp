// Tests of data-parallel training (facet/distributed/mpi.hpp, Trainer with a Communicator). Run
// as `mpirun -np 2 test_mpi` (tests/CMakeLists.txt registers it so); with any other number of
// processes it fails at once. They check that the rank-ordered sum equals the closed form; that
// every rank holds the same weights after K steps, whatever seeds the ranks began with; that two
// runs give the same bits; that 2 ranks with shards of b agree with 1 process with batch 2b on
// a model without batch norm; that a NaN in one rank's shard stops or skips both ranks; and that
// a run stopped in the middle of an epoch and resumed from rank 0's checkpoint ends with the
// uninterrupted run's model.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <facet/distributed/mpi.hpp>
#include <facet/layers/activations.hpp>
#include <facet/layers/batchnorm.hpp>
#include <facet/layers/conv2d.hpp>
#include <facet/layers/dense.hpp>
#include <facet/layers/dropout.hpp>
#include <facet/layers/flatten.hpp>
#include <facet/layers/maxpool2d.hpp>
#include <facet/optim/adam.hpp>
#include <facet/optim/schedule.hpp>
#include <facet/optim/sgd.hpp>
#include <facet/train/checkpoint.hpp>
#include <facet/train/trainer.hpp>

#include "temp_dir.hpp"

using namespace facet;

namespace {

constexpr std::size_t side = 8, classes = 3;
constexpr int expected_ranks = 2;

MpiCommunicator* world = nullptr;  // set in main()

/// The toy task: which third of an 8 x 8 noisy image holds a bright bar; 96 images.
const Dataset& toy_data() {
    static const Dataset data = [] {
        Dataset d;
        d.split = "toy", d.height = side, d.width = side, d.class_names = {"a", "b", "c"};
        Rng rng(11);
        std::vector<std::uint8_t> image(side * side);
        for (int i = 0; i < 96; ++i) {
            const int label = i % 3;
            for (std::size_t r = 0; r < side; ++r)
                for (std::size_t c = 0; c < side; ++c) {
                    const double v =
                        60 + rng.normal(0, 25) + (c / 3 == std::size_t(label) ? 120 : 0);
                    image[r * side + c] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
                }
            d.add(image.data(), label);
        }
        return d;
    }();
    return data;
}

Sequential<float> toy_model(bool batch_norm, std::uint64_t seed) {
    Sequential<float> model(Shape{1, side, side});
    model.add<Conv2d<float>>(1, 4, 3, 1, 1, !batch_norm, seed);
    if (batch_norm) model.add<BatchNorm2d<float>>(4);
    model.add<ReLU<float>>();
    model.add<MaxPool2d<float>>(2);
    model.add<Flatten<float>>();
    if (batch_norm) model.add<Dropout<float>>(0.25, seed + 1);
    model.add<Dense<float>>(4 * 4 * 4, classes, true, seed + 2);
    return model;
}

/// One training run: loader (this rank's shard of each global batch), model, optimiser, trainer.
struct Run {
    Sequential<float> model;
    std::unique_ptr<Optimizer<float>> optimizer;
    ConstantSchedule schedule{0.05};
    Normalization norm = Normalization::of(toy_data());
    BatchLoader loader;
    LoaderBatches train{loader};
    DatasetBatches validation;
    Trainer trainer;

    struct Options {
        std::size_t global_batch = 16;
        bool distributed = true, batch_norm = true, sgd = false;
        std::uint64_t model_seed = 3;
        std::size_t epochs = 2, max_steps = 0;
        NonFinitePolicy on_nonfinite = NonFinitePolicy::Stop;
    };

    explicit Run(const Options& o)
        : model(toy_model(o.batch_norm, o.model_seed)),
          optimizer(make_optimizer(model, o.sgd)),
          loader(toy_data(), norm, loader_options(o)),
          validation(toy_data(), norm, 40, o.distributed ? world->rank() : 0,
                     o.distributed ? world->size() : 1),
          trainer(model, *optimizer, schedule, trainer_options(o)) {}

    static std::unique_ptr<Optimizer<float>> make_optimizer(Sequential<float>& m, bool sgd) {
        if (sgd)
            return std::make_unique<SGD<float>>(m.parameters(),
                                                SgdOptions{.learning_rate = 0.05, .momentum = 0.9});
        return std::make_unique<AdamW<float>>(m.parameters(), AdamOptions{.learning_rate = 0.01});
    }
    static BatchOptions loader_options(const Options& o) {
        BatchOptions b;
        b.batch_size = o.global_batch, b.seed = 5, b.augment = false, b.prefetch = 0;
        if (o.distributed) b.shard_index = world->rank(), b.shard_count = world->size();
        return b;
    }
    static TrainerOptions trainer_options(const Options& o) {
        TrainerOptions t;
        t.epochs = o.epochs, t.max_steps = o.max_steps, t.seed = 9;
        t.handle_signals = false, t.on_nonfinite = o.on_nonfinite;
        if (o.distributed) t.communicator = world;
        return t;
    }
    TrainSummary fit() { return trainer.fit(train, validation); }
};

/// Every parameter and buffer value of `model`, in order.
std::vector<float> weights_of(Sequential<float>& model) {
    std::vector<float> all;
    for (const auto& p : model.parameters())
        all.insert(all.end(), p.value->begin(), p.value->end());
    for (auto& [name, t] : model.buffers()) all.insert(all.end(), t->begin(), t->end());
    return all;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Whether every rank's `values` have rank 0's bits.
bool same_on_every_rank(std::vector<float> values) {
    std::vector<float> root = values;
    world->broadcast(std::span<float>(root.data(), root.size()), 0);
    double differing = same_bits(root, values) ? 0 : 1;
    world->sum(std::span<double>(&differing, 1));
    return differing == 0;
}

/// A folder that every rank names the same (rank 0's, which it creates and removes).
struct SharedDir {
    std::unique_ptr<facet_test::TempDir> owned;
    std::string path;
    SharedDir() {
        std::vector<unsigned char> name;
        if (world->is_root()) {
            owned = std::make_unique<facet_test::TempDir>("facet_mpi_");
            const std::string p = owned->path.string();
            name.assign(p.begin(), p.end());
        }
        name = world->broadcast_vector(std::move(name), 0);
        path.assign(name.begin(), name.end());
    }
    ~SharedDir() { world->barrier(); }  // no rank still reads when rank 0 removes it
};

}  // namespace

TEST_CASE("the sum in rank order equals the closed form, for floats and doubles of any length") {
    const int p = world->size(), rank = world->rank();
    for (std::size_t n : {0, 1, 2, 3, 7, 1000, 4097}) {
        CAPTURE(n);
        // Rank r gives (r + 1) i + r; the sum over ranks is i p (p + 1) / 2 + p (p - 1) / 2.
        std::vector<float> f(n);
        std::vector<double> d(n);
        for (std::size_t i = 0; i < n; ++i) {
            f[i] = static_cast<float>((rank + 1) * static_cast<double>(i) + rank);
            d[i] = (rank + 1) * static_cast<double>(i) + rank + 0.25 * rank;
        }
        world->sum(std::span<float>(f));
        world->sum(std::span<double>(d));
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double closed = static_cast<double>(i) * p * (p + 1) / 2 + p * (p - 1) / 2.0;
            if (f[i] != static_cast<float>(closed)) ++wrong;
            if (d[i] != closed + 0.25 * p * (p - 1) / 2.0) ++wrong;
        }
        CHECK(wrong == 0);
    }
    std::vector<unsigned char> message;
    if (world->is_root()) message = {'f', 'a', 'c', 'e', 't'};
    message = world->broadcast_vector(std::move(message), 0);
    CHECK(std::string(message.begin(), message.end()) == "facet");
}

TEST_CASE("after K steps every rank holds the same weights, though each began from its own seed") {
    Run::Options o;
    o.model_seed = 3 + static_cast<std::uint64_t>(world->rank());  // differ until the broadcast
    o.max_steps = 9;  // epoch 1 and three steps of epoch 2 (6 global batches of 16 an epoch)
    Run run(o);
    const TrainSummary s = run.fit();
    CHECK(s.steps == 9);
    CHECK(s.completed_epochs == 1);
    CHECK(same_on_every_rank(weights_of(run.model)));
    // The validation every rank saw was the whole set's: its shards summed.
    CHECK(s.best_val_accuracy >= 0);
}

TEST_CASE("two runs with 2 ranks give the same bits") {
    Run::Options o;
    Run first(o), second(o);
    const TrainSummary a = first.fit(), b = second.fit();
    CHECK(a.best_val_accuracy == b.best_val_accuracy);
    CHECK(same_bits(weights_of(first.model), weights_of(second.model)));
    CHECK(same_on_every_rank(weights_of(first.model)));
}

TEST_CASE("2 ranks with shards of b agree with 1 process with batch 2b (no batch norm)") {
    // Without batch norm or dropout a step's gradient is the mean over the global batch either
    // way; only the order of the float additions differs (each shard's mean, weighted by its
    // size, then the sum over ranks), a few units in the last place per step.
    Run::Options o;
    o.batch_norm = false, o.sgd = true, o.global_batch = 13, o.epochs = 2;  // shards of 6 and 7
    Run distributed(o);
    o.distributed = false;
    Run alone(o);
    distributed.fit(), alone.fit();
    const std::vector<float> a = weights_of(distributed.model), b = weights_of(alone.model);
    REQUIRE(a.size() == b.size());
    double largest = 0, worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        largest = std::max(largest, std::abs(static_cast<double>(b[i])));
        worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    }
    MESSAGE("largest weight " << largest << ", largest difference " << worst);
    CHECK(worst <= 1e-5 * largest);  // 16 steps of SGD with momentum, float rounding alone
    Run untrained(o);
    CHECK(!same_bits(a, weights_of(untrained.model)));  // the runs did move the weights
}

TEST_CASE("a NaN in one rank's shard stops every rank, or every rank skips the step") {
    auto poison_rank_1_at_step_3 = [](Trainer& t, Batch& b) {
        if (world->rank() == 1 && t.state().step + 1 == 3 && b.size() > 0)
            b.images.data()[0] = std::numeric_limits<float>::quiet_NaN();
    };
    struct Poison : Callback {
        std::function<void(Trainer&, Batch&)> f;
        void on_batch_begin(Trainer& t, Batch& b) override { f(t, b); }
    };
    SUBCASE("stop") {
        Run run(Run::Options{});
        run.trainer.add<Poison>().f = poison_rank_1_at_step_3;
        bool stopped = false;
        try {
            run.fit();
        } catch (const NonFiniteError& e) {
            stopped = true;
            MESSAGE("rank " << world->rank() << ": " << std::string(e.what()));
            CHECK(e.step() == 3);
            // A NaN loss is rank 1's to describe; a NaN gradient, summed, is every rank's.
            if (e.kind() == NonFiniteError::Kind::Loss)
                CHECK(e.other_process() == (world->rank() == 0));
            else
                CHECK(!e.other_process());
            CHECK(run.trainer.state().step == 2);
        }
        CHECK(stopped);
        CHECK(same_on_every_rank(weights_of(run.model)));
    }
    SUBCASE("skip") {
        Run::Options o;
        o.on_nonfinite = NonFinitePolicy::Skip;
        Run run(o);
        run.trainer.add<Poison>().f = poison_rank_1_at_step_3;
        const TrainSummary s = run.fit();
        CHECK(s.skipped_steps == 1);
        CHECK(s.steps == 12);
        CHECK(same_on_every_rank(weights_of(run.model)));
    }
}

TEST_CASE("a run stopped mid-epoch and resumed from rank 0's checkpoint ends with the same model") {
    SharedDir dir;
    const std::string checkpoint = dir.path + "/checkpoint.facet";
    Run::Options o;
    o.epochs = 2;
    Run whole(o);
    whole.fit();

    o.max_steps = 8;  // stops inside epoch 2
    {
        Run first(o);
        if (world->is_root()) first.trainer.add<CheckpointSaver>(checkpoint, 3);
        const TrainSummary s = first.fit();
        CHECK(s.mid_epoch);
        world->barrier();  // the file is complete before the others ask rank 0 for it
    }
    o.max_steps = 0;
    Run resumed(o);
    resumed.trainer.resume(checkpoint);  // rank 0 reads it and sends it to the others
    CHECK(resumed.trainer.state().step == 8);
    resumed.fit();
    CHECK(same_bits(weights_of(resumed.model), weights_of(whole.model)));
    CHECK(same_on_every_rank(weights_of(resumed.model)));
}

/// Not a test: `mpirun -np N test_mpi --sum-timings` prints the time of Communicator::sum against
/// the buffer size (the median of 21 calls after 3 warm-up calls), for docs/distributed.md.
int print_sum_timings(MpiCommunicator& comm) {
    if (comm.is_root())
        std::cout << "processes " << comm.size() << "\nfloats bytes median_us GB/s_per_process\n";
    for (std::size_t n = 1; n <= (std::size_t{1} << 24); n *= 4) {
        std::vector<float> values(n, 1.0f);
        std::vector<double> seconds;
        for (int i = 0; i < 24; ++i) {
            comm.barrier();
            const auto t0 = std::chrono::steady_clock::now();
            comm.sum(std::span<float>(values));
            const double s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (i >= 3) seconds.push_back(s);
        }
        std::sort(seconds.begin(), seconds.end());
        const double median = seconds[seconds.size() / 2];
        // Each process sends and receives 2 (p - 1) / p of the buffer.
        const double moved = 2.0 * (comm.size() - 1) / comm.size() * static_cast<double>(n) * 4;
        if (comm.is_root())
            std::cout << n << " " << n * 4 << " " << median * 1e6 << " " << moved / median / 1e9
                      << "\n";
    }
    return 0;
}

int main(int argc, char** argv) {
    MpiEnvironment mpi(argc, argv);
    MpiCommunicator communicator;
    world = &communicator;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--sum-timings") return print_sum_timings(communicator);
    if (communicator.size() != expected_ranks) {
        if (communicator.is_root())
            std::cerr << "test_mpi: FAILED: needs exactly " << expected_ranks
                      << " processes (mpirun -np " << expected_ranks << " test_mpi), got "
                      << communicator.size() << "\n";
        return 1;
    }
    doctest::Context context(argc, argv);
    if (!communicator.is_root()) context.setOption("out", "/dev/null");  // one report, rank 0's
    int status = context.run();
    double failed = status != 0 ? 1 : 0;  // a failure on any rank fails the test
    communicator.sum(std::span<double>(&failed, 1));
    if (failed > 0 && status == 0 && communicator.is_root())
        std::cerr << "test_mpi: a test failed on another rank\n";
    return failed > 0 ? 1 : 0;
}
