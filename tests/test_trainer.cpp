// Tests of facet::Trainer and its callbacks (facet/train/) on a small model and a toy task, and of
// the validation protocol of `fer train`: the hooks fire in order; checkpoints every N steps are
// complete files, and a run resumed from one in the middle of an epoch ends with the bits of an
// uninterrupted run; early stopping and reduce-on-plateau act on the validation accuracy and
// survive a resume; non-finite steps stop the run or are skipped and counted; the stratified
// split is stratified, seeded, disjoint from training and never takes test images; distillation
// takes its share of the targets from a teacher; a weight anchor pulls the weights back towards
// their reference; re-estimated batch-norm statistics are the means of the batches'; Mixup and
// CutMix blend images and targets in one proportion; and `fer train` on the synthetic faces learns.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <facet/facet.hpp>
#include <nlohmann/json.hpp>

#include "fer/train.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using namespace facet;

namespace {

constexpr std::size_t side = 8, classes = 3;

/// The toy task: which third of an 8 x 8 noisy image holds a bright bar. Batch `index` of epoch
/// `epoch` is drawn from (seed, epoch, index) alone, as a BatchSource must guarantee.
class ToyBatches : public BatchSource {
  public:
    ToyBatches(std::size_t batches, std::size_t batch_size, std::uint64_t seed)
        : batches_(batches), batch_size_(batch_size), seed_(seed) {}
    std::size_t batches_per_epoch() const override { return batches_; }
    void start_epoch(std::size_t epoch, std::size_t first_batch) override {
        epoch_ = epoch, next_ = first_batch;
    }
    bool next(Batch& batch) override {
        if (next_ >= batches_) return false;
        Rng rng(detail::mix_seed(seed_, epoch_, next_));
        batch = Batch{};
        batch.epoch = epoch_, batch.index = next_++;
        batch.images.resize(Shape{batch_size_, 1, side, side});
        for (std::size_t i = 0; i < batch_size_; ++i) {
            const int label = static_cast<int>(rng.below(classes));
            batch.labels.push_back(label);
            batch.indices.push_back(batch.index * batch_size_ + i);
            for (std::size_t r = 0; r < side; ++r)
                for (std::size_t c = 0; c < side; ++c)
                    batch.images(i, 0, r, c) =
                        static_cast<float>(rng.normal(0, 0.3)) +
                        (c / 3 == static_cast<std::size_t>(label) ? 1.0f : 0.0f);
        }
        return true;
    }

  private:
    std::size_t batches_, batch_size_;
    std::uint64_t seed_;
    std::size_t epoch_ = 0, next_ = 0;
};

/// fer::train_on with its output captured in `captured`; std::cout gets its buffer back even
/// when training throws.
int train_quietly(const fer::TrainConfig& c, const facet::DataSplits& data,
                  std::ostringstream& captured) {
    struct Restore {
        std::streambuf* old;
        ~Restore() { std::cout.rdbuf(old); }
    } restore{std::cout.rdbuf(captured.rdbuf())};
    return fer::train_on(c, data);
}

/// Validation whose accuracy cannot change: one image three times, labelled 0, 1 and 2, so
/// exactly one of the three is right whatever the model predicts (accuracy 1/3 every epoch).
class ConstantAccuracy : public BatchSource {
  public:
    std::size_t batches_per_epoch() const override { return 1; }
    void start_epoch(std::size_t, std::size_t first_batch) override { done_ = first_batch > 0; }
    bool next(Batch& batch) override {
        if (done_) return false;
        done_ = true;
        batch = Batch{};
        batch.images.resize(Shape{classes, 1, side, side});
        batch.images.fill(0.5f);
        batch.labels = {0, 1, 2};
        return true;
    }

  private:
    bool done_ = false;
};

Sequential<float> toy_model() {
    Sequential<float> model(Shape{1, side, side});
    model.add<Conv2d<float>>(1, 4, 3, 1, 1, false, 3);
    model.add<BatchNorm2d<float>>(4);
    model.add<ReLU<float>>();
    model.add<MaxPool2d<float>>(2);
    model.add<Flatten<float>>();
    model.add<Dropout<float>>(0.25, 4);  // masks from the trainer's per-step seed
    model.add<Dense<float>>(4 * 4 * 4, classes, true, 5);
    return model;
}

/// A model, its optimiser and schedule, and a trainer over them: everything a run needs.
struct Run {
    Sequential<float> model = toy_model();
    AdamW<float> optimizer{model.parameters(), AdamOptions{.learning_rate = 0.01}};
    std::unique_ptr<Schedule> schedule;
    Trainer trainer;

    explicit Run(TrainerOptions options, std::unique_ptr<Schedule> s = nullptr)
        : schedule(s ? std::move(s) : std::make_unique<CosineSchedule>(0.01, 2, 40)),
          trainer(model, optimizer, *schedule, with_defaults(std::move(options))) {}

    static TrainerOptions with_defaults(TrainerOptions o) {
        o.handle_signals = false;  // the test runner's own handlers stay
        return o;
    }
};

using facet_test::scratch;

std::string bytes_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// Records every hook call as a line, prefixed with a name.
class Recorder : public Callback {
  public:
    Recorder(std::string name, std::vector<std::string>& events)
        : name_(std::move(name)), events_(events) {}
    void on_train_begin(Trainer&) override { log("train_begin"); }
    void on_epoch_begin(Trainer&, std::size_t e) override { log("epoch_begin " + n(e)); }
    void on_batch_begin(Trainer&, Batch& b) override { log("batch_begin " + n(b.index)); }
    void on_step_end(Trainer&, const StepReport& r) override { log("step_end " + n(r.step)); }
    void on_nonfinite(Trainer&, const NonFiniteError&, bool skipped) override {
        log(skipped ? "nonfinite skipped" : "nonfinite stop");
    }
    void on_epoch_end(Trainer&, const EpochReport& r) override { log("epoch_end " + n(r.epoch)); }
    void after_epoch(Trainer&, const EpochReport& r) override { log("after_epoch " + n(r.epoch)); }
    void on_train_end(Trainer&, const TrainSummary& s) override {
        log("train_end " + n(s.completed_epochs));
    }

  private:
    static std::string n(std::uint64_t v) { return std::to_string(v); }
    void log(const std::string& what) { events_.push_back(name_ + " " + what); }
    std::string name_;
    std::vector<std::string>& events_;
};

/// A model without batch norm or dropout (flatten, dense), whose weights are drawn from seed 5.
Sequential<float> linear_model() {
    Sequential<float> m(Shape{1, side, side});
    m.add<Flatten<float>>();
    m.add<Dense<float>>(side * side, classes, true, 5);
    return m;
}

/// Every parameter value of `m`, in order.
std::vector<float> weights_of(Sequential<float>& m) {
    std::vector<float> v;
    for (const auto& p : m.parameters()) v.insert(v.end(), p.value->begin(), p.value->end());
    return v;
}

/// The same batches every epoch: images[i] with labels[i] (all 0 where labels has no entry i).
struct FixedBatches : BatchSource {
    std::vector<Tensor<float>> images;
    std::vector<std::vector<int>> labels;
    std::size_t next_ = 0;
    std::size_t batches_per_epoch() const override { return images.size(); }
    void start_epoch(std::size_t, std::size_t first) override { next_ = first; }
    bool next(Batch& b) override {
        if (next_ >= images.size()) return false;
        b = Batch{};
        b.images = images[next_];
        if (next_ < labels.size()) {
            b.labels = labels[next_];
        } else {
            b.labels.assign(b.images.dim(0), 0);
        }
        ++next_;
        return true;
    }
};

/// Calls `f` on each batch before its step (to poison chosen ones) and each step's report.
struct OnStep : Callback {
    std::function<void(Trainer&, Batch&)> before;
    std::function<void(Trainer&, const StepReport&)> after;
    void on_batch_begin(Trainer& t, Batch& b) override {
        if (before) before(t, b);
    }
    void on_step_end(Trainer& t, const StepReport& r) override {
        if (after) after(t, r);
    }
};

/// Trains a fresh linear_model() for two epochs of SGD at `lr` with a WeightAnchor of `strength`
/// (and `importance`, if any) to its starting weights. `inspect` sees the anchor once;
/// `check_step` sees the weights after the optimiser's step and after the anchor's pull, at
/// every step. Returns the final weights.
std::vector<float> train_anchored(
    double lr, double strength, std::vector<Tensor<float>> importance,
    const std::function<void(const WeightAnchor&)>& inspect,
    const std::function<void(const std::vector<float>&, const std::vector<float>&, double)>&
        check_step) {
    Sequential<float> model = linear_model();
    SGD<float> optimizer(model.parameters(), SgdOptions{.learning_rate = lr});
    ConstantSchedule schedule(lr);
    Trainer trainer(model, optimizer, schedule, {.epochs = 2, .handle_signals = false});
    std::vector<float> stepped;
    OnStep& before = trainer.add<OnStep>();
    before.after = [&](Trainer&, const StepReport&) { stepped = weights_of(model); };
    const WeightAnchor& anchor =
        trainer.add<WeightAnchor>(model.parameters(), strength, std::move(importance));
    if (inspect) inspect(anchor);
    OnStep& after = trainer.add<OnStep>();
    after.after = [&](Trainer&, const StepReport& r) {
        if (check_step) check_step(stepped, weights_of(model), r.learning_rate);
    };
    ToyBatches batches(4, 8, 4);
    ConstantAccuracy val;
    trainer.fit(batches, val);
    return weights_of(model);
}

}  // namespace

TEST_CASE("the trainer calls every hook in order, callbacks in the order they were added") {
    std::vector<std::string> events;
    Run run({.epochs = 2});
    run.trainer.add<Recorder>("a", events);
    run.trainer.add<Recorder>("b", events);
    ToyBatches train(2, 8, 1);
    ConstantAccuracy val;
    const TrainSummary s = run.trainer.fit(train, val);
    CHECK(s.reason == StopReason::Completed);
    CHECK(s.completed_epochs == 2);
    CHECK(s.steps == 4);
    std::vector<std::string> expected;
    auto both = [&](const std::string& e) {
        expected.push_back("a " + e);
        expected.push_back("b " + e);
    };
    both("train_begin");
    for (int epoch = 0, step = 0; epoch < 2; ++epoch) {
        both("epoch_begin " + std::to_string(epoch));
        for (int batch = 0; batch < 2; ++batch) {
            both("batch_begin " + std::to_string(batch));
            both("step_end " + std::to_string(++step));
        }
        both("epoch_end " + std::to_string(epoch + 1));
        both("after_epoch " + std::to_string(epoch + 1));
    }
    both("train_end 2");
    CHECK(events == expected);
}

TEST_CASE("distillation: the teacher's share of the targets, per sample") {
    // A model without batch norm or dropout, so that training and inference mode compute the
    // same logits: the student starts as a copy of the teacher.
    Sequential<float> teacher = linear_model();
    const std::vector<float> start = weights_of(teacher);
    auto train = [&](std::function<double(std::size_t)> share, std::size_t& distilled) {
        Sequential<float> student = linear_model();
        AdamW<float> optimizer(student.parameters(),
                               AdamOptions{.learning_rate = 0.01, .weight_decay = 0});
        ConstantSchedule schedule(0.01);
        Trainer trainer(student, optimizer, schedule, {.epochs = 2, .handle_signals = false});
        const Distillation& d = trainer.add<Distillation>(teacher, std::move(share));
        ToyBatches batches(3, 8, 4);
        ConstantAccuracy val;
        trainer.fit(batches, val);
        distilled = d.distilled_batches();
        return weights_of(student);
    };
    std::size_t distilled = 0;
    // All of every target from a teacher that predicts what the student does: the gradient is
    // p - t = 0 exactly, so the weights do not move at all.
    CHECK(train([](std::size_t) { return 1.0; }, distilled) == start);
    CHECK(distilled == 6);
    CHECK(weights_of(teacher) == start);  // the teacher is never trained
    // Labels alone (every share 0): the student learns, and the teacher never runs.
    CHECK(train([](std::size_t) { return 0.0; }, distilled) != start);
    CHECK(distilled == 0);
    // Half the samples partly from the teacher: every batch distils, the weights move.
    CHECK(train([](std::size_t i) { return i % 2 ? 0.5 : 0.0; }, distilled) != start);
    CHECK(distilled == 6);

    // An ensemble of two copies of the student is the student: the weights stay.
    {
        Sequential<float> student = linear_model(), copy = linear_model();
        AdamW<float> optimizer(student.parameters(),
                               AdamOptions{.learning_rate = 0.01, .weight_decay = 0});
        ConstantSchedule schedule(0.01);
        Trainer trainer(student, optimizer, schedule, {.epochs = 1, .handle_signals = false});
        trainer.add<Distillation>(std::vector<Sequential<float>*>{&teacher, &copy},
                                  [](std::size_t) { return 1.0; });
        ToyBatches batches(3, 8, 4);
        ConstantAccuracy val;
        trainer.fit(batches, val);
        CHECK(weights_of(student) == start);
    }
    // Two different teachers: the target is the mean of their probabilities.
    {
        Sequential<float> other(Shape{1, side, side});
        other.add<Flatten<float>>();
        other.add<Dense<float>>(side * side, classes, true, 77);
        Sequential<float> student = linear_model();
        SGD<float> optimizer(student.parameters(), SgdOptions{.learning_rate = 0.01});
        ConstantSchedule schedule(0.01);
        Trainer trainer(student, optimizer, schedule, {.epochs = 1, .handle_signals = false});
        Distillation ensemble(std::vector<Sequential<float>*>{&teacher, &other},
                              [](std::size_t) { return 1.0; });
        ToyBatches batches(1, 8, 4);
        batches.start_epoch(0, 0);
        Batch batch;
        REQUIRE(batches.next(batch));
        ensemble.on_batch_begin(trainer, batch);
        const Tensor<float> za = teacher.predict(batch.images);
        const Tensor<float> zb = other.predict(batch.images);  // predict gives probabilities
        Tensor<float> logits(Shape{batch.size(), classes});
        Rng rng(8);
        for (float& z : logits) z = static_cast<float>(rng.normal());
        long double want = 0;
        for (std::size_t n = 0; n < batch.size(); ++n) {
            long double log_sum = 0;
            for (std::size_t k = 0; k < classes; ++k)
                log_sum += std::exp((long double)logits(n, k));
            log_sum = std::log(log_sum);
            for (std::size_t k = 0; k < classes; ++k)
                want += 0.5L * ((long double)za(n, k) + zb(n, k)) * (log_sum - logits(n, k));
        }
        want /= batch.size();
        CHECK(trainer.loss().forward(logits, batch.labels) ==
              doctest::Approx(static_cast<double>(want)).epsilon(1e-5));
        CHECK_THROWS_WITH_AS(
            Distillation(std::vector<Sequential<float>*>{}, [](std::size_t) { return 1.0; }),
            doctest::Contains("no teacher"), Error);
    }
}

TEST_CASE("a weight anchor pulls the weights towards their reference by lr x strength per step") {
    Sequential<float> reference = linear_model();
    const std::vector<float> start = weights_of(reference);
    auto farthest = [&](const std::vector<float>& w) {  // the largest |w - start|
        double d = 0;
        for (std::size_t i = 0; i < w.size(); ++i)
            d = std::max(d, double(std::fabs(w[i] - start[i])));
        return d;
    };
    auto train =
        [&](double lr, double strength,
            std::function<void(const std::vector<float>&, const std::vector<float>&, double)>
                check_step) {
            return train_anchored(
                lr, strength, {},
                [&](const WeightAnchor& anchor) { CHECK(anchor.strength() == strength); },
                check_step);
        };
    // Every step: w <- w - lr * strength * (w - start), element by element.
    std::size_t checked = 0;
    const std::vector<float> anchored = train(
        0.1, 2.0,
        [&](const std::vector<float>& stepped, const std::vector<float>& pulled, double lr) {
            REQUIRE(pulled.size() == start.size());
            const auto k = static_cast<float>(lr * 2.0);
            double worst = 0;  // against the same expression (it may be fused or not)
            for (std::size_t i = 0; i < start.size(); ++i)
                worst = std::max(
                    worst,
                    double(std::fabs(pulled[i] - (stepped[i] - k * (stepped[i] - start[i])))));
            CHECK(worst <= 1e-7);
            CHECK(pulled != stepped);
            ++checked;
        });
    CHECK(checked == 8);
    // Strength 0 changes nothing; a pull of lr x strength = 1 puts the weights back every step.
    const std::vector<float> free = train(0.1, 0.0, nullptr);
    CHECK(farthest(free) > 1e-2);
    CHECK(farthest(train(0.1, 10.0, nullptr)) <= 1e-6);
    // The anchored run ends nearer the reference than the free one.
    auto distance = [&](const std::vector<float>& w) {
        double d = 0;
        for (std::size_t i = 0; i < w.size(); ++i) d += (w[i] - start[i]) * (w[i] - start[i]);
        return d;
    };
    CHECK(distance(anchored) < 0.5 * distance(free));
    // Bad strengths, and a rate that would pull past the reference, are refused by name.
    Sequential<float> model = linear_model();
    CHECK_THROWS_WITH_AS(WeightAnchor(model.parameters(), -1), doctest::Contains("strength"),
                         Error);
    CHECK_THROWS_WITH_AS(WeightAnchor(model.parameters(), std::nan("")),
                         doctest::Contains("strength"), Error);
    CHECK_THROWS_WITH_AS(train(0.1, 20.0, nullptr), doctest::Contains("past their reference"),
                         Error);
}

TEST_CASE("a weight anchor with importance pulls each weight by lr x strength x its importance") {
    Sequential<float> reference = linear_model();
    const std::vector<float> start = weights_of(reference);
    // Importance: 0 on the first weights, 1, 2 or 400 elsewhere; its mean is rescaled to 1.
    std::vector<Tensor<float>> importance;
    double sum = 0;
    std::size_t count = 0;
    for (const auto& p : reference.parameters()) {
        Tensor<float>& t = importance.emplace_back(p.value->shape());
        for (std::size_t j = 0; j < t.size(); ++j) {
            t[j] = j < 10 ? 0.0f : j == 20 ? 400.0f : float(1 + j % 2);
            sum += t[j];
        }
        count += t.size();
    }
    std::vector<float> scaled;  // what the anchor should use, flattened as weights_of
    for (const Tensor<float>& t : importance)
        for (float v : t) scaled.push_back(static_cast<float>(double(v) * double(count) / sum));

    const double lr = 0.1, strength = 2.0;
    std::size_t checked = 0;
    double worst = 0;
    train_anchored(
        lr, strength, importance,
        [&](const WeightAnchor& anchor) {
            REQUIRE(anchor.importance().size() == importance.size());
            CHECK(anchor.importance()[0][20] == doctest::Approx(scaled[20]).epsilon(1e-6));
        },
        [&](const std::vector<float>& stepped, const std::vector<float>& pulled, double rate) {
            REQUIRE(pulled.size() == start.size());
            for (std::size_t i = 0; i < start.size(); ++i) {
                const double k = std::min(1.0, rate * strength * double(scaled[i]));
                const double want =
                    double(stepped[i]) - k * (double(stepped[i]) - double(start[i]));
                worst = std::max(worst, std::fabs(double(pulled[i]) - want));
            }
            for (std::size_t i = 0; i < 10; ++i) CHECK(pulled[i] == stepped[i]);  // importance 0
            CHECK(pulled[20] == start[20]);  // lr x strength x importance > 1: on the reference
            ++checked;
        });
    CHECK(checked == 8);
    CHECK(worst <= 1e-6);

    // Importance that does not fit the parameters, or is negative, NaN or all 0, is refused.
    Sequential<float> model = linear_model();
    auto params = model.parameters();
    auto with = [&](auto change) {
        std::vector<Tensor<float>> bad = importance;
        change(bad);
        return WeightAnchor(params, 1.0, bad);
    };
    CHECK_THROWS_WITH_AS(with([](auto& b) { b.pop_back(); }), doctest::Contains("importance"),
                         Error);
    CHECK_THROWS_WITH_AS(with([](auto& b) { b[0] = Tensor<float>(Shape{3}); }),
                         doctest::Contains("has shape"), Error);
    CHECK_THROWS_WITH_AS(with([](auto& b) { b[0][11] = -1; }), doctest::Contains(">= 0"), Error);
    CHECK_THROWS_WITH_AS(with([](auto& b) { b[0][11] = std::nanf(""); }), doctest::Contains(">= 0"),
                         Error);
    CHECK_THROWS_WITH_AS(with([](auto& b) {
                             for (auto& t : b) t.fill(0.0f);
                         }),
                         doctest::Contains("every importance is 0"), Error);
}

TEST_CASE("the Fisher diagonal is B x the squared gradient of each batch, averaged over batches") {
    // Three batches of a linear model, whose cross-entropy gradient is known in closed form:
    // dL/dW = (1/B) sum_n (p_n - e_{y_n}) x_n^T and dL/db = (1/B) sum_n (p_n - e_{y_n}).
    FixedBatches source;
    Rng rng(8);
    for (std::size_t n : {4, 6, 3}) {
        Tensor<float> x(Shape{n, 1, side, side});
        for (float& v : x) v = static_cast<float>(rng.normal(0.0, 1.0));
        std::vector<int> y(n);
        for (int& label : y) label = static_cast<int>(rng.next_u64() % classes);
        source.images.push_back(x);
        source.labels.push_back(y);
    }
    Sequential<float> model = linear_model();
    const std::vector<float> before = weights_of(model);
    const Tensor<float>& W = *model.parameters()[0].value;
    const Tensor<float>& bias = *model.parameters()[1].value;
    const std::size_t in = side * side;
    std::vector<double> want_w(classes * in, 0.0), want_b(classes, 0.0);
    for (std::size_t k = 0; k < source.images.size(); ++k) {
        const Tensor<float>& x = source.images[k];
        const std::size_t B = x.dim(0);
        std::vector<double> gw(classes * in, 0.0), gb(classes, 0.0);
        for (std::size_t n = 0; n < B; ++n) {
            std::vector<double> z(classes);
            double zmax = -1e300;
            for (std::size_t c = 0; c < classes; ++c) {
                z[c] = bias[c];
                for (std::size_t i = 0; i < in; ++i) z[c] += double(W[c * in + i]) * x[n * in + i];
                zmax = std::max(zmax, z[c]);
            }
            double total = 0;
            for (double& v : z) total += (v = std::exp(v - zmax));
            for (std::size_t c = 0; c < classes; ++c) {
                const double d =
                    (z[c] / total - (int(c) == source.labels[k][n] ? 1.0 : 0.0)) / double(B);
                gb[c] += d;
                for (std::size_t i = 0; i < in; ++i) gw[c * in + i] += d * x[n * in + i];
            }
        }
        for (std::size_t i = 0; i < gw.size(); ++i) want_w[i] += double(B) * gw[i] * gw[i] / 3;
        for (std::size_t c = 0; c < classes; ++c) want_b[c] += double(B) * gb[c] * gb[c] / 3;
    }
    const std::vector<Tensor<float>> fisher = fisher_diagonal(model, model.parameters(), source);
    REQUIRE(fisher.size() == 2);
    REQUIRE(fisher[0].shape() == W.shape());
    double worst = 0, largest = 0;
    for (std::size_t i = 0; i < want_w.size(); ++i) {
        worst = std::max(worst, std::fabs(double(fisher[0][i]) - want_w[i]));
        largest = std::max(largest, want_w[i]);
    }
    for (std::size_t c = 0; c < classes; ++c)
        worst = std::max(worst, std::fabs(double(fisher[1][c]) - want_b[c]));
    CHECK(largest > 1e-3);
    CHECK(worst <= 1e-5 * largest);
    CHECK(weights_of(model) == before);  // nothing trained

    // With batch norm: its running statistics and momentum are left as they were.
    Sequential<float> normed(Shape{1, side, side});
    BatchNorm2d<float>& bn = normed.add<BatchNorm2d<float>>(1, 1e-5, 0.1);
    normed.add<Flatten<float>>();
    normed.add<Dense<float>>(in, classes, true, 5);
    const std::string described = bn.describe();
    const float mean = bn.running_mean()[0], var = bn.running_var()[0];
    const std::vector<Tensor<float>> with_bn = fisher_diagonal(normed, normed.parameters(), source);
    CHECK(with_bn.size() == 4);  // gamma, beta, weight, bias
    CHECK(bn.running_mean()[0] == mean);
    CHECK(bn.running_var()[0] == var);
    CHECK(bn.describe() == described);
    CHECK(normed.mode() == Mode::Eval);
    source.images.clear();
    CHECK_THROWS_WITH_AS(fisher_diagonal(model, model.parameters(), source),
                         doctest::Contains("no batch"), Error);
}

TEST_CASE("re-estimated running statistics are the plain means of the batches' statistics") {
    // Three batches of (N, 2, 3, 3) images whose channels have different means and spreads.
    FixedBatches source;
    Rng rng(21);
    for (std::size_t n : {4, 5, 2}) {
        Tensor<float> x(Shape{n, 2, 3, 3});
        for (std::size_t i = 0; i < x.size(); ++i) {
            const std::size_t channel = (i / 9) % 2;
            x[i] = static_cast<float>(rng.normal(channel ? -1.0 : 2.0, channel ? 0.5 : 3.0) +
                                      0.3 * static_cast<double>(source.images.size()));
        }
        source.images.push_back(x);
    }
    // The expected values, in long double: per channel, the mean over batches of each batch's
    // mean and of its unbiased variance.
    long double want_mean[2] = {0, 0}, want_var[2] = {0, 0};
    for (const Tensor<float>& x : source.images)
        for (std::size_t c = 0; c < 2; ++c) {
            long double sum = 0, sum_sq = 0;
            std::size_t m = 0;
            for (std::size_t n = 0; n < x.dim(0); ++n)
                for (std::size_t k = 0; k < 9; ++k, ++m) {
                    const long double v = x[(n * 2 + c) * 9 + k];
                    sum += v, sum_sq += v * v;
                }
            const long double mean = sum / m;
            want_mean[c] += mean / 3;
            want_var[c] += (sum_sq / m - mean * mean) * m / (m - 1) / 3;
        }

    Sequential<float> model(Shape{2, 3, 3});
    BatchNorm2d<float>& bn = model.add<BatchNorm2d<float>>(2, 1e-5, 0.1);
    model.add<Flatten<float>>();
    model.add<Dense<float>>(18, classes, true, 5);
    const std::string described = bn.describe();
    CHECK(reestimate_running_statistics(model, source) == 1);
    for (std::size_t c = 0; c < 2; ++c) {
        CHECK(bn.running_mean()[c] == doctest::Approx(double(want_mean[c])).epsilon(1e-5));
        CHECK(bn.running_var()[c] == doctest::Approx(double(want_var[c])).epsilon(1e-5));
    }
    CHECK(bn.describe() == described);  // the momentum is back
    CHECK(model.mode() == Mode::Eval);
    // The same data again: the same statistics (nothing carried over from the first pass).
    const float mean0 = bn.running_mean()[0];
    reestimate_running_statistics(model, source);
    CHECK(bn.running_mean()[0] == doctest::Approx(mean0).epsilon(1e-6));

    // Batch norms inside graphs are found: a residual block with a projection holds three.
    Sequential<float> residual(Shape{2, 3, 3});
    residual.add<BatchNorm2d<float>>(2);
    residual.add(std::make_unique<Graph<float>>(
        residual_block<float>(residual.output_shape(), 4, 1, 3, true)));
    CHECK(reestimate_running_statistics(residual, source) == 4);
    bool moved = false;  // the block's batch norms too (they start at mean 0)
    for (const auto& [name, tensor] : residual.buffers())
        if (name.rfind("1.", 0) == 0 && name.find("running_mean") != std::string::npos)
            for (float v : *tensor) moved = moved || v != 0;
    CHECK(moved);

    // No batch norm: no pass, nothing changed. No batch: an error, the momenta restored.
    Sequential<float> plain(Shape{2, 3, 3});
    plain.add<Flatten<float>>();
    CHECK(reestimate_running_statistics(plain, source) == 0);
    source.images.clear();
    CHECK_THROWS_WITH_AS(reestimate_running_statistics(model, source),
                         doctest::Contains("no batch"), Error);
    CHECK(bn.describe() == described);
}

TEST_CASE("Beta draws have the mean and variance of Beta(a, a)") {
    for (const double a : {0.2, 1.0, 3.0}) {
        Rng rng(7);
        const int n = 40000;
        double sum = 0, sum_sq = 0;
        for (int i = 0; i < n; ++i) {
            const double x = beta_draw(a, a, rng);
            REQUIRE(x >= 0);
            REQUIRE(x <= 1);
            sum += x, sum_sq += x * x;
        }
        const double mean = sum / n, variance = sum_sq / n - mean * mean;
        const double expected_variance = 1 / (4 * (2 * a + 1));
        // Standard error of the mean sqrt(var / n) <= 0.0025; 4 of them.
        CHECK(mean == doctest::Approx(0.5).epsilon(0.02));
        CHECK(variance == doctest::Approx(expected_variance).epsilon(0.05));
    }
}

TEST_CASE("Mixup and CutMix: images and targets blended in one proportion") {
    Sequential<float> model(Shape{1, side, side});
    model.add<Flatten<float>>();
    model.add<Dense<float>>(side * side, classes, true, 5);
    SGD<float> optimizer(model.parameters(), SgdOptions{.learning_rate = 0.01});
    ConstantSchedule schedule(0.01);
    const double eps = 0.1;
    Trainer trainer(model, optimizer, schedule,
                    {.epochs = 1, .label_smoothing = eps, .handle_signals = false});
    ToyBatches source(1, 8, 9);
    source.start_epoch(0, 0);
    Batch original;
    REQUIRE(source.next(original));
    const std::size_t n = original.size(), pixels = side * side;

    // The loss of logits z against the blend lam q(y_n) + (1 - lam) q(y_m), in long double.
    Tensor<float> logits(Shape{n, classes});
    Rng rng(3);
    for (float& z : logits) z = static_cast<float>(rng.normal(0, 2));
    auto expected_loss = [&](const MixupDraw& d, const std::vector<int>& labels) {
        long double total = 0;
        for (std::size_t s = 0; s < n; ++s) {
            const float* z = logits.data() + s * classes;
            long double log_sum = 0;
            for (std::size_t k = 0; k < classes; ++k) log_sum += std::exp((long double)z[k]);
            log_sum = std::log(log_sum);
            for (std::size_t k = 0; k < classes; ++k) {
                auto q = [&](int label) {
                    return eps / classes + (k == static_cast<std::size_t>(label) ? 1 - eps : 0);
                };
                const long double target =
                    d.lam * q(labels[s]) + (1 - d.lam) * q(labels[d.partner[s]]);
                total += target * (log_sum - z[k]);
            }
        }
        return static_cast<double>(total / n);
    };
    auto is_permutation = [&](const std::vector<std::size_t>& partner) {
        std::vector<std::size_t> sorted = partner;
        std::sort(sorted.begin(), sorted.end());
        for (std::size_t i = 0; i < n; ++i)
            if (sorted[i] != i) return false;
        return partner.size() == n;
    };

    SUBCASE("mixup") {
        Mixup mixup(MixupOptions{.kind = MixupKind::Mixup, .alpha = 1.0}, classes, 11);
        Batch batch = original;
        mixup.on_batch_begin(trainer, batch);
        const MixupDraw& d = mixup.last_draw();
        REQUIRE(d.applied);
        CHECK(d.lam > 0);
        CHECK(d.lam < 1);
        CHECK(is_permutation(d.partner));
        CHECK(batch.labels == original.labels);  // the labels stay; the targets blend
        for (std::size_t s = 0; s < n; ++s)
            for (std::size_t i = 0; i < pixels; ++i) {
                const float want =
                    static_cast<float>(d.lam) * original.images[s * pixels + i] +
                    static_cast<float>(1 - d.lam) * original.images[d.partner[s] * pixels + i];
                REQUIRE(batch.images[s * pixels + i] == want);
            }
        const double loss = trainer.loss().forward(logits, batch.labels);
        CHECK(loss == doctest::Approx(expected_loss(d, batch.labels)).epsilon(1e-6));
        // The same step draws the same blend (a resumed run repeats it).
        Mixup again(MixupOptions{.kind = MixupKind::Mixup, .alpha = 1.0}, classes, 11);
        Batch second = original;
        again.on_batch_begin(trainer, second);
        CHECK(again.last_draw().lam == d.lam);
        CHECK(again.last_draw().partner == d.partner);
        // Another seed, another blend.
        Mixup other(MixupOptions{.kind = MixupKind::Mixup, .alpha = 1.0}, classes, 12);
        Batch third = original;
        other.on_batch_begin(trainer, third);
        CHECK(other.last_draw().lam != d.lam);
    }
    SUBCASE("cutmix") {
        Mixup cutmix(MixupOptions{.kind = MixupKind::CutMix, .alpha = 1.0}, classes, 5);
        Batch batch = original;
        cutmix.on_batch_begin(trainer, batch);
        const MixupDraw& d = cutmix.last_draw();
        REQUIRE(d.applied);
        CHECK(is_permutation(d.partner));
        CHECK(d.box_x + d.box_w <= side);
        CHECK(d.box_y + d.box_h <= side);
        CHECK(d.lam == doctest::Approx(1 - double(d.box_w * d.box_h) / pixels));
        for (std::size_t s = 0; s < n; ++s)
            for (std::size_t r = 0; r < side; ++r)
                for (std::size_t c = 0; c < side; ++c) {
                    const bool inside = r >= d.box_y && r < d.box_y + d.box_h && c >= d.box_x &&
                                        c < d.box_x + d.box_w;
                    const std::size_t from = inside ? d.partner[s] : s;
                    REQUIRE(batch.images(s, 0, r, c) == original.images(from, 0, r, c));
                }
        const double loss = trainer.loss().forward(logits, batch.labels);
        CHECK(loss == doctest::Approx(expected_loss(d, batch.labels)).epsilon(1e-6));
    }
    SUBCASE("probability 0 leaves the batch and the targets alone") {
        Mixup off(MixupOptions{.kind = MixupKind::Mixup, .alpha = 1.0, .probability = 0}, classes,
                  5);
        Batch batch = original;
        off.on_batch_begin(trainer, batch);
        CHECK_FALSE(off.last_draw().applied);
        CHECK(std::equal(batch.images.begin(), batch.images.end(), original.images.begin()));
        MixupDraw none;
        none.lam = 1, none.partner.resize(n);
        CHECK(trainer.loss().forward(logits, batch.labels) ==
              doctest::Approx(expected_loss(none, batch.labels)).epsilon(1e-6));
    }
    SUBCASE("bad options are refused") {
        CHECK_THROWS_WITH_AS(Mixup(MixupOptions{.alpha = 0}, classes, 1),
                             doctest::Contains("alpha"), Error);
        CHECK_THROWS_WITH_AS(Mixup(MixupOptions{.probability = 2}, classes, 1),
                             doctest::Contains("probability"), Error);
        CHECK_THROWS_WITH_AS(Mixup(MixupOptions{}, 1, 1), doctest::Contains("classes"), Error);
    }
}

TEST_CASE("a Trainer with Mixup blends every batch and still learns the toy task") {
    Sequential<float> model(Shape{1, side, side});
    model.add<Flatten<float>>();
    model.add<Dense<float>>(side * side, classes, true, 5);
    AdamW<float> optimizer(model.parameters(),
                           AdamOptions{.learning_rate = 0.02, .weight_decay = 0});
    ConstantSchedule schedule(0.02);
    Trainer trainer(model, optimizer, schedule,
                    {.epochs = 6, .label_smoothing = 0.1, .handle_signals = false});
    const Mixup& mixup = trainer.add<Mixup>(MixupOptions{.alpha = 0.4}, classes, 3);
    ToyBatches train(4, 16, 6);
    trainer.fit(train, train);
    CHECK(mixup.blended_batches() == 24);
    // Judged on unblended batches: far above chance (1/3).
    ToyBatches test(4, 16, 99);
    test.start_epoch(0, 0);
    Batch batch;
    std::size_t right = 0, total = 0;
    model.set_mode(Mode::Eval);
    while (test.next(batch)) {
        const Tensor<float>& p = model.predict(batch.images);
        for (std::size_t i = 0; i < batch.size(); ++i, ++total)
            right += argmax_row(p.data() + i * classes, classes) == batch.labels[i];
    }
    CHECK(double(right) / double(total) > 0.9);
}

TEST_CASE("checkpoints every N steps are whole files, and a mid-epoch resume ends bit-identical") {
    const std::string straight = scratch("ckpt_straight"), split = scratch("ckpt_split");
    const TrainerOptions options{.epochs = 3, .seed = 9};
    ToyBatches train(4, 8, 2);  // 4 steps per epoch, 12 in all
    ConstantAccuracy val;
    std::vector<std::uint64_t> seen_steps;
    {
        Run run(options);
        run.trainer.add<CheckpointSaver>(straight + "/ck.facet", 3);
        // After each saving step the file is complete (it loads: size, CRC-32 and finiteness are
        // verified) and stands at that step, and no temporary file is left beside it.
        auto& probe = run.trainer.add<OnStep>();
        probe.after = [&](Trainer&, const StepReport& r) {
            if (r.step % 3) return;
            const Checkpoint<float> ck = load_checkpoint<float>(straight + "/ck.facet");
            CHECK(ck.info.step == r.step);
            CHECK(ck.info.epoch == r.epoch);
            for (const auto& entry : fs::directory_iterator(straight))
                CHECK(entry.path().filename().string() == "ck.facet");
            seen_steps.push_back(r.step);
        };
        CHECK(run.trainer.fit(train, val).steps == 12);
    }
    CHECK(seen_steps == std::vector<std::uint64_t>{3, 6, 9, 12});
    {
        TrainerOptions o = options;
        o.max_steps = 6;  // stops after batch 2 of epoch 2: in the middle
        Run run(o);
        run.trainer.add<CheckpointSaver>(split + "/ck.facet", 5);
        const TrainSummary s = run.trainer.fit(train, val);
        CHECK(s.reason == StopReason::MaxSteps);
        CHECK(s.mid_epoch);
        const Checkpoint<float> ck = load_checkpoint<float>(split + "/ck.facet");
        CHECK(ck.info.step == 6);
        CHECK(ck.info.epoch == 1);
    }
    {
        Run run(options);  // a fresh process would build the same model, then resume
        run.trainer.add<CheckpointSaver>(split + "/ck.facet", 3);
        run.trainer.resume(split + "/ck.facet");
        CHECK(run.trainer.state().step == 6);
        CHECK(run.trainer.fit(train, val).steps == 12);
    }
    // Weights, batch-norm statistics, Adam's moments and step count, schedule and counters.
    CHECK(bytes_of(split + "/ck.facet") == bytes_of(straight + "/ck.facet"));

    SUBCASE("resume refuses another model or another seed") {
        Sequential<float> other(Shape{1, side, side});
        other.add<Flatten<float>>();
        other.add<Dense<float>>(side * side, classes);
        AdamW<float> opt(other.parameters());
        ConstantSchedule constant(0.01);
        Trainer trainer(other, opt, constant, {.handle_signals = false});
        CHECK_THROWS_WITH_AS(trainer.resume(split + "/ck.facet"), doctest::Contains("layers"),
                             Error);
        Run wrong_seed({.seed = 10});
        CHECK_THROWS_WITH_AS(wrong_seed.trainer.resume(split + "/ck.facet"),
                             doctest::Contains("seed"), Error);
    }
}

TEST_CASE("a bf16 run keeps fp32 weights, learns, resumes bit-identical, and only in bf16") {
    const std::string straight = scratch("bf16_straight"), split = scratch("bf16_split"),
                      fp32 = scratch("bf16_fp32");
    const TrainerOptions options{.epochs = 3, .seed = 9};
    ToyBatches train(4, 8, 2), test(4, 16, 99);
    ConstantAccuracy val;
    auto bf16_run = [](Run& run) { run.model.context().precision = Precision::Bf16; };
    {
        Run run(options);
        bf16_run(run);
        run.trainer.add<CheckpointSaver>(straight + "/ck.facet", 4);
        CHECK(run.trainer.fit(train, val).steps == 12);
        // The master weights are fp32, not bf16 values: updates below bf16's step accumulate.
        std::size_t beyond_bf16 = 0;
        for (const auto& p : run.model.parameters())
            for (float w : *p.value)
                beyond_bf16 += (std::bit_cast<std::uint32_t>(w) & 0xffffu) != 0;
        CHECK(beyond_bf16 > 0);
    }
    {
        TrainerOptions o = options;
        o.max_steps = 6;
        Run run(o);
        bf16_run(run);
        run.trainer.add<CheckpointSaver>(split + "/ck.facet", 5);
        run.trainer.fit(train, val);
    }
    {
        Run run(options);
        bf16_run(run);
        run.trainer.add<CheckpointSaver>(split + "/ck.facet", 4);
        run.trainer.resume(split + "/ck.facet");
        CHECK(run.trainer.fit(train, val).steps == 12);
    }
    CHECK(bytes_of(split + "/ck.facet") == bytes_of(straight + "/ck.facet"));
    CHECK(load_checkpoint<float>(straight + "/ck.facet").info.note("precision") == "bf16");
    {
        Run run(options);  // the same run in fp32 ends elsewhere: the products were bf16
        run.trainer.add<CheckpointSaver>(fp32 + "/ck.facet", 4);
        run.trainer.fit(train, val);
    }
    CHECK(bytes_of(fp32 + "/ck.facet") != bytes_of(straight + "/ck.facet"));
    {
        Run run(options);  // an fp32 run refuses the bf16 checkpoint, and the other way round
        CHECK_THROWS_WITH_AS(run.trainer.resume(straight + "/ck.facet"),
                             doctest::Contains("trained in bf16, this run computes in fp32"),
                             Error);
        Run bf16(options);
        bf16_run(bf16);
        CHECK_THROWS_WITH_AS(bf16.trainer.resume(fp32 + "/ck.facet"),
                             doctest::Contains("trained in fp32, this run computes in bf16"),
                             Error);
    }
    {
        TrainerOptions o = options;
        o.epochs = 6;
        Run run(o);
        bf16_run(run);
        run.trainer.fit(train, val);
        test.start_epoch(0, 0);
        Batch batch;
        std::size_t right = 0, total = 0;
        run.model.set_mode(Mode::Eval);
        while (test.next(batch)) {
            const Tensor<float>& p = run.model.predict(batch.images);
            for (std::size_t i = 0; i < batch.size(); ++i, ++total)
                right += argmax_row(p.data() + i * classes, classes) == batch.labels[i];
        }
        CHECK(double(right) / double(total) > 0.9);  // chance: 1/3
    }
}

TEST_CASE("early stopping after `patience` epochs without a better validation accuracy") {
    ToyBatches train(2, 8, 3);
    ConstantAccuracy val;  // epoch 1 improves on nothing; no later epoch improves on it
    Run run({.epochs = 10});
    run.trainer.add<EarlyStopping>(2);
    std::vector<bool> improved;
    struct Watch : Callback {
        std::vector<bool>& improved;
        explicit Watch(std::vector<bool>& i) : improved(i) {}
        void on_epoch_end(Trainer&, const EpochReport& r) override {
            improved.push_back(r.improved);
        }
    };
    run.trainer.add<Watch>(improved);
    const TrainSummary s = run.trainer.fit(train, val);
    CHECK(s.reason == StopReason::EarlyStopped);
    CHECK(s.completed_epochs == 3);
    CHECK(improved == std::vector<bool>{true, false, false});
    CHECK(s.best_epoch == 1);
    CHECK(s.best_val_accuracy == doctest::Approx(1.0 / 3));

    // The count is in the checkpoint: a run stopped after epoch 2 and resumed stops at 3 too.
    const std::string dir = scratch("early");
    {
        Run first({.epochs = 10, .max_steps = 4});
        first.trainer.add<EarlyStopping>(2);
        first.trainer.add<CheckpointSaver>(dir + "/ck.facet");
        CHECK(first.trainer.fit(train, val).reason == StopReason::MaxSteps);
    }
    Run second({.epochs = 10});
    second.trainer.add<EarlyStopping>(2);
    second.trainer.resume(dir + "/ck.facet");
    CHECK(second.trainer.state().epochs_without_improvement == 1);
    const TrainSummary r = second.trainer.fit(train, val);
    CHECK(r.reason == StopReason::EarlyStopped);
    CHECK(r.completed_epochs == 3);
}

TEST_CASE("reduce-on-plateau lowers the rate by `factor` after `patience` flat epochs, to min_lr") {
    auto plateau = [] {
        PlateauOptions o;
        o.factor = 0.5, o.patience = 1, o.min_lr = 0.02, o.goal = MetricGoal::Maximize;
        return std::make_unique<ReduceOnPlateau>(0.1, o);
    };
    ToyBatches train(2, 8, 4);
    ConstantAccuracy val;
    // Epoch 1 sets the best; epochs 2 and 3 are flat, and more than 1 flat epoch halves the rate
    // (then the count starts again): 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, then 0.02 (not
    // 0.0125: the floor).
    const std::vector<double> expected = {0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02};
    auto rates_of = [&](Run& run) {
        std::vector<double> rates;
        auto& probe = run.trainer.add<OnStep>();
        probe.after = [&rates](Trainer& t, const StepReport& r) {
            CHECK(t.optimizer().learning_rate() == r.learning_rate);
            if (r.batch_index == 0) rates.push_back(r.learning_rate);
        };
        run.trainer.fit(train, val);
        return rates;
    };
    Run run({.epochs = 8}, plateau());
    CHECK(rates_of(run) == expected);

    // The schedule's state (rate, best, flat epochs) travels in the checkpoint.
    const std::string dir = scratch("plateau");
    {
        Run first({.epochs = 8, .max_steps = 9}, plateau());  // mid epoch 5
        first.trainer.add<CheckpointSaver>(dir + "/ck.facet");
        first.trainer.fit(train, val);
    }
    Run second({.epochs = 8}, plateau());
    second.trainer.resume(dir + "/ck.facet");
    // (rates_of notes the rate of each epoch's first batch: epoch 5 resumed at its second)
    CHECK(rates_of(second) == std::vector<double>(expected.begin() + 5, expected.end()));
}

TEST_CASE("a non-finite step stops naming it, or is skipped and counted") {
    ToyBatches train(3, 8, 5);
    ConstantAccuracy val;
    auto poison = [](std::set<std::uint64_t> bad) {
        return [bad](Trainer& t, Batch& b) {
            if (bad.count(t.state().step + 1)) b.images.fill(std::nanf(""));
        };
    };
    SUBCASE("stop: the error names the step; the checkpoint keeps the last good state") {
        const std::string dir = scratch("nan_stop");
        Run run({.epochs = 2});
        run.trainer.add<CheckpointSaver>(dir + "/ck.facet", 1);
        auto& hook = run.trainer.add<OnStep>();  // after the saver: sees its step-4 file
        hook.before = poison({5});
        std::string before;
        hook.after = [&](Trainer&, const StepReport& r) {
            if (r.step == 4) before = bytes_of(dir + "/ck.facet");
        };
        try {
            run.trainer.fit(train, val);
            FAIL("no error");
        } catch (const NonFiniteError& e) {
            CHECK(e.step() == std::uint64_t{5});
            CHECK(e.input_not_finite());
            CHECK(std::string(e.what()).find("at step 5: ") != std::string::npos);
        }
        CHECK(bytes_of(dir + "/ck.facet") == before);
    }
    SUBCASE("skip: counted per epoch and in all; the run goes on") {
        std::vector<std::string> events;
        Run run({.epochs = 2, .on_nonfinite = NonFinitePolicy::Skip});
        run.trainer.add<OnStep>().before = poison({2, 5, 6});
        std::vector<std::size_t> per_epoch;
        struct Watch : Callback {
            std::vector<std::size_t>& counts;
            explicit Watch(std::vector<std::size_t>& c) : counts(c) {}
            void on_epoch_end(Trainer&, const EpochReport& r) override {
                counts.push_back(r.skipped_steps);
            }
        };
        run.trainer.add<Watch>(per_epoch);
        run.trainer.add<Recorder>("r", events);
        const TrainSummary s = run.trainer.fit(train, val);
        CHECK(s.reason == StopReason::Completed);
        CHECK(s.skipped_steps == 3);
        CHECK(per_epoch == std::vector<std::size_t>{1, 2});
        CHECK(std::count(events.begin(), events.end(), "r nonfinite skipped") == 3);
        for (const Parameter<float>& p : run.model.parameters())
            for (float v : *p.value) REQUIRE(std::isfinite(v));
    }
    SUBCASE("skip gives up after max_consecutive_skips in a row") {
        Run run({.epochs = 2, .on_nonfinite = NonFinitePolicy::Skip, .max_consecutive_skips = 2});
        run.trainer.add<OnStep>().before = poison({2, 4, 5});
        CHECK_THROWS_WITH_AS(run.trainer.fit(train, val),
                             doctest::Contains("gave up after 2 skipped steps in a row"), Error);
        CHECK(run.trainer.state().step == 4);  // step 5 threw before it was counted
    }
}

namespace {

/// A data set whose image i of `tag` is unique: the first two pixels hold i, the third the tag.
Dataset numbered(const std::vector<std::size_t>& per_class, std::uint8_t tag,
                 const std::string& split) {
    Dataset d;
    d.split = split;
    d.height = d.width = 4;
    d.class_names = {"a", "b", "c", "d", "e"};
    std::vector<std::uint8_t> image(16, 0);
    std::size_t i = 0;
    for (std::size_t round = 0; round < 200; ++round)
        for (std::size_t c = 0; c < per_class.size(); ++c)
            if (round < per_class[c]) {
                image[0] = static_cast<std::uint8_t>(i & 255),
                image[1] = static_cast<std::uint8_t>(i >> 8);
                image[2] = tag;
                d.add(image.data(), static_cast<int>(c));
                ++i;
            }
    return d;
}

std::set<std::string> images_of(const Dataset& d) {
    std::set<std::string> s;
    for (std::size_t i = 0; i < d.size(); ++i)
        s.insert(std::string(reinterpret_cast<const char*>(d.image(i)), d.image_size()));
    return s;
}

}  // namespace

TEST_CASE("stratified_split holds out each class's share, seeded, disjoint, in order") {
    const Dataset data = numbered({50, 20, 10, 3, 1}, 1, "train");
    const StratifiedSplit s = stratified_split(data, 0.2, 7);
    // round(0.2 n), at least one of a class with two or more, never all of a class.
    CHECK(s.record.held_out_counts == std::vector<std::size_t>{10, 4, 2, 1, 0});
    CHECK(s.held_out.class_counts() == s.record.held_out_counts);
    CHECK(s.kept.class_counts() == std::vector<std::size_t>{40, 16, 8, 2, 1});
    CHECK(s.record.kept_counts == s.kept.class_counts());
    const auto kept = images_of(s.kept), held = images_of(s.held_out), all = images_of(data);
    for (const std::string& image : held) CHECK(kept.count(image) == 0);
    CHECK(kept.size() + held.size() == all.size());
    CHECK(std::is_sorted(s.record.held_out.begin(), s.record.held_out.end()));
    for (std::size_t k = 0; k < s.record.held_out.size(); ++k)
        CHECK(std::memcmp(s.held_out.image(k), data.image(s.record.held_out[k]), 16) == 0);

    const StratifiedSplit again = stratified_split(data, 0.2, 7);
    CHECK(again.record.held_out == s.record.held_out);
    CHECK(again.record.fingerprint(data.size()) == s.record.fingerprint(data.size()));
    const StratifiedSplit other = stratified_split(data, 0.2, 8);
    CHECK(other.record.held_out_counts == s.record.held_out_counts);
    CHECK(other.record.held_out != s.record.held_out);
    CHECK(other.record.fingerprint(data.size()) != s.record.fingerprint(data.size()));
    CHECK_THROWS_AS(stratified_split(data, 1.0, 7), Error);
}

TEST_CASE("fer train validates on images held out of training and never on the test split") {
    facet::DataSplits splits;
    splits.splits.push_back(numbered({30, 30, 20, 10, 10}, 1, "train"));
    splits.splits.push_back(numbered({5, 5, 5, 5, 5}, 2, "test"));
    fer::TrainConfig c;
    c.val_fraction = 0.1, c.val_seed = 3;
    const auto train = images_of(splits.splits[0]), test = images_of(splits.splits[1]);

    SUBCASE("image folders with train/ and test/") {
        const fer::DataPlan plan = fer::plan_data(c, splits);
        CHECK(plan.val_source == "held out of train");
        REQUIRE(plan.split.has_value());
        CHECK(plan.val.class_counts() == std::vector<std::size_t>{3, 3, 2, 1, 1});
        for (const std::string& image : images_of(plan.val)) {
            CHECK(train.count(image) == 1);
            CHECK(test.count(image) == 0);
        }
        for (const std::string& image : images_of(plan.train)) CHECK(test.count(image) == 0);
        CHECK(plan.train.size() + plan.val.size() == 100);
        REQUIRE(plan.tests.size() == 1);
        CHECK(plan.tests[0].second == &splits.splits[1]);
        // What the model file and the log record.
        const facet::ModelMetadata notes = plan.notes();
        auto note = [&](const std::string& key) {
            for (const auto& [k, v] : notes)
                if (k == key) return v;
            return std::string("(missing)");
        };
        CHECK(note("validation.source") == "held out of train");
        CHECK(note("validation.seed") == "3");
        CHECK(note("validation.per_class") == "3,3,2,1,1");
        CHECK(note("validation.fingerprint") == plan.split->fingerprint(100));
        CHECK(std::stod(note("validation.fraction")) == 0.1);
        CHECK(plan.record()["fingerprint"] == plan.split->fingerprint(100));
        c.val_seed = 4;
        CHECK(fer::plan_data(c, splits).split->fingerprint(100) != plan.split->fingerprint(100));
    }
    SUBCASE("a 'val' folder is the validation split") {
        splits.splits.push_back(numbered({2, 2, 2, 2, 2}, 3, "val"));
        const fer::DataPlan plan = fer::plan_data(c, splits);
        CHECK(plan.val_source == "val split");
        CHECK(images_of(plan.val) == images_of(splits.splits[2]));
        CHECK(plan.train.size() == 100);
        CHECK(plan.tests.size() == 1);
    }
    SUBCASE("a CSV's PublicTest ('val') and PrivateTest ('test') are both test data") {
        splits.splits.push_back(numbered({2, 2, 2, 2, 2}, 3, "val"));
        const std::string csv = scratch("csv") + "/fer2013.csv";
        std::ofstream(csv) << "emotion,pixels,Usage\n";
        c.data = {csv};
        const fer::DataPlan plan = fer::plan_data(c, splits);
        CHECK(plan.val_source == "held out of train");
        for (const std::string& image : images_of(plan.val)) CHECK(train.count(image) == 1);
        REQUIRE(plan.tests.size() == 2);
        CHECK(plan.tests[0].second == &splits.splits[2]);  // PublicTest: the test figure
        CHECK(plan.tests[1].second == &splits.splits[1]);  // PrivateTest: the second one
    }
}

TEST_CASE("fer train on the synthetic faces learns: validation accuracy far above chance") {
    fer::SyntheticFaceOptions faces;
    // 167 per class: 17 held out for validation, 150 trained on (1050 images, 33 steps of 32):
    // few enough for seconds, enough to learn. The seed fixes the result on a given CPU.
    faces.train_per_class = 167, faces.test_per_class = 10;
    const facet::DataSplits data = fer::make_synthetic_faces(faces);
    fer::TrainConfig c;
    c.out = scratch("learns");
    c.epochs = 6, c.batch = 32, c.threads = 2, c.seed = 1, c.checkpoint_every = 0;
    std::ostringstream captured;
    REQUIRE(train_quietly(c, data, captured) == 0);
    double best = 0;
    std::vector<nlohmann::json> tests;
    std::ifstream log(c.out + "/log.jsonl");
    for (std::string line; std::getline(log, line);) {
        const nlohmann::json r = nlohmann::json::parse(line);
        if (!r.contains("event"))
            best = std::max(best, r["val_acc"].get<double>());
        else if (r["event"] == "test")
            tests.push_back(r);
    }
    INFO(captured.str());
    CHECK(best >= 0.5);  // chance is 1/7
    // The test split was evaluated once, after training, for the chosen and the last model.
    REQUIRE(tests.size() == 1);
    CHECK(tests[0]["samples"] == 70);
    CHECK(tests[0]["accuracy_best_epoch"].get<double>() > 1.0 / 7);
    const facet::ModelFile<float> m = facet::load_model_file<float>(c.out + "/model.facet");
    bool has_test_note = false, has_fingerprint = false;
    for (const auto& [k, v] : m.metadata) {
        has_test_note = has_test_note || k == "test.accuracy_best_epoch";
        has_fingerprint = has_fingerprint || k == "validation.fingerprint";
    }
    CHECK(has_test_note);
    CHECK(has_fingerprint);

    // That model as a teacher, twice (an ensemble), distilled into a new one.
    fer::TrainConfig student = c;
    student.out = scratch("learns-student");
    student.teachers = {c.out + "/model.facet", c.out + "/model.facet"};
    student.distill = 0.5, student.epochs = 1;
    CHECK(train_quietly(student, data, captured) == 0);
    CHECK(fs::exists(student.out + "/model.facet"));
    // A teacher trained on other data normalises otherwise: refused, naming it.
    faces.train_per_class = 60, faces.seed = 99;
    const facet::DataSplits other_data = fer::make_synthetic_faces(faces);
    student.out = scratch("learns-refused");
    CHECK_THROWS_WITH_AS(train_quietly(student, other_data, captured),
                         doctest::Contains("--teacher"), Error);
    student.teachers = {c.out + "/missing.facet"};
    CHECK_THROWS_WITH_AS(train_quietly(student, data, captured), doctest::Contains("missing.facet"),
                         Error);
}

TEST_CASE(
    "fer train's validation, plateau and precision options: parsed, checked, reach the set-up") {
    auto parse = [](std::vector<std::string> args) {
        args.insert(args.begin(), {"fer", "train"});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        fer::Cli cli = fer::train_cli();
        REQUIRE(cli.parse(static_cast<int>(argv.size()), argv.data(), 2));
        return fer::train_config(cli);
    };
    const fer::TrainConfig c =
        parse({"--val-fraction", "0.2", "--val-seed", "5", "--schedule", "plateau",
               "--plateau-factor", "0.25", "--plateau-patience", "2", "--min-lr", "0.0001"});
    CHECK(c.val_fraction == 0.2);
    CHECK(c.val_seed == 5);
    const std::unique_ptr<Schedule> s = fer::make_schedule(c, 10);
    const ScheduleState state = s->state();
    CHECK(state.type == "ReduceOnPlateau");
    CHECK(state.get("factor") == 0.25);
    CHECK(state.get("patience") == 2);
    CHECK(state.get("min_lr") == 0.0001);
    CHECK(state.get("maximize") == 1);  // the trainer reports validation accuracy
    const fer::TrainConfig d = parse({});
    CHECK(d.val_fraction == 0.1);
    CHECK(d.val_seed == 2013);
    CHECK(d.precision == Precision::Fp32);
    CHECK(parse({"--precision", "bf16"}).precision == Precision::Bf16);
    for (const std::vector<std::string>& bad : {std::vector<std::string>{"--val-fraction", "1.5"},
                                                {"--precision", "fp16"},
                                                {"--precision", "int8"},
                                                {"--val-fraction", "0"},
                                                {"--plateau-factor", "1"},
                                                {"--min-lr", "1"}})
        CHECK_THROWS_WITH_AS(parse(bad), doctest::Contains(bad[0].c_str()), Error);
}

TEST_CASE(
    "fer --bf16-kernel: the kernel asked for is set; one the CPU lacks, or a wrong name, is "
    "refused") {
    const facet::Context saved = facet::process_context();
    for (facet::Bf16Isa isa : {facet::Bf16Isa::Auto, facet::Bf16Isa::Avx512Bf16,
                               facet::Bf16Isa::Amx, facet::Bf16Isa::Portable}) {
        const std::string name = facet::bf16_isa_name(isa);
        INFO(name);
        if (facet::bf16_isa_supported(isa)) {
            fer::set_bf16_kernel(name, "train");
            CHECK(facet::process_context().bf16_isa == isa);
        } else {
            CHECK_THROWS_WITH_AS(fer::set_bf16_kernel(name, "train"),
                                 doctest::Contains(("train: --bf16-kernel " + name).c_str()),
                                 Error);
        }
    }
    for (const char* bad : {"amx", "", "AVX512-BF16", "amx-reference"})
        CHECK_THROWS_WITH_AS(fer::set_bf16_kernel(bad, "bench"),
                             doctest::Contains("bench: --bf16-kernel must be auto, avx512-bf16, "
                                               "amx-bf16 or portable"),
                             Error);
    facet::process_context() = saved;
}
