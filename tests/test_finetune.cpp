// Tests of learning from corrections: the domain-shift generator is deterministic and changes the
// faces; corrections are filed (fer correct) and read with duplicates reported and conflicts
// refused; fer predict --save-faces writes the crops it classified; fer finetune never overwrites
// its parent, records where the new model came from, keeps a frozen backbone as it was, and
// raises accuracy on held-out faces of a shifted domain, and with --distill stays closer to its
// parent on the old faces; --blend writes the stated weight-space blend with the parent; fer eval
// averages an ensemble's probabilities as stated and compares two models class by class.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fer/corrections.hpp"
#include "fer/domain_shift.hpp"
#include "fer/evaluate.hpp"
#include "fer/finetune.hpp"
#include "fer/model_zoo.hpp"
#include "fer/predict.hpp"
#include "fer_command.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using facet_test::scratch;

namespace {

/// Runs a fer subcommand body with `args`, returning its status and what it printed.
std::pair<int, std::string> run_cli(fer::Cli cli, int (*body)(const fer::Cli&),
                                    std::vector<std::string> args) {
    auto run = facet_test::run_fer_command(std::move(cli), body, std::move(args));
    return {run.status, run.output};
}

facet::DataSplits synthetic(std::size_t train, std::size_t test) {
    fer::SyntheticFaceOptions o;
    o.train_per_class = train;
    o.test_per_class = test;
    return fer::make_synthetic_faces(o);
}

/// A small CNN (two conv blocks, a two-layer classifier), fast enough to train in a test.
facet::Sequential<float> small_cnn(std::uint64_t seed) {
    using namespace facet;
    Sequential<float> m(Shape{1, 48, 48});
    m.add<Conv2d<float>>(1, 8, 3, 1, 1, false, seed + 1);
    m.add<BatchNorm2d<float>>(8);
    m.add<ReLU<float>>();
    m.add<MaxPool2d<float>>(4);
    m.add<Conv2d<float>>(8, 16, 3, 1, 1, false, seed + 2);
    m.add<BatchNorm2d<float>>(16);
    m.add<ReLU<float>>();
    m.add<MaxPool2d<float>>(2);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(16 * 6 * 6, 32, false, seed + 3);
    m.add<BatchNorm1d<float>>(32);
    m.add<ReLU<float>>();
    m.add<Dense<float>>(32, 7, true, seed + 4);
    return m;
}

/// Trains small_cnn on `train` for a few epochs and saves it with the notes fer models carry.
/// `on_trainer` may add callbacks to the trainer before it runs.
void train_parent(const facet::Dataset& train, const std::string& path, std::uint64_t seed,
                  std::size_t epochs = 6,
                  const std::function<void(facet::Trainer&)>& on_trainer = {}) {
    facet::set_num_threads(2);
    facet::Sequential<float> model = small_cnn(seed);
    const facet::Normalization norm = facet::Normalization::of(train);
    facet::AdamOptions ao;
    ao.learning_rate = 3e-3;
    facet::AdamW<float> optimizer(model.parameters(), ao);
    facet::BatchOptions bo;
    bo.batch_size = 32, bo.shuffle = true, bo.augment = true, bo.seed = seed;
    facet::BatchLoader loader(train, norm, bo);
    facet::LoaderBatches batches(loader);
    facet::DatasetBatches val(train, norm, 256);
    facet::ConstantSchedule schedule(3e-3);
    facet::TrainerOptions to;
    to.epochs = epochs, to.seed = seed, to.handle_signals = false;
    facet::Trainer trainer(model, optimizer, schedule, to);
    if (on_trainer) on_trainer(trainer);
    trainer.fit(batches, val);
    facet::save(model, path,
                {{"program", "fer"},
                 {"normalization.mean", facet::detail::round_trip_digits(norm.mean)},
                 {"normalization.stddev", facet::detail::round_trip_digits(norm.stddev)},
                 {"classes", "angry,disgust,fear,happy,sad,surprise,neutral"}});
}

/// A camera far from the synthetic faces' look, so the shift costs a clean model accuracy.
fer::CameraProfile hard_camera() {
    fer::CameraProfile p;
    p.low_resolution = 12;
    p.blur_sigma = 1.2;
    p.gamma = 1.9;
    p.contrast = 0.5;
    p.brightness = 30;
    p.noise_sigma = 14;
    p.jpeg_quality = 15;
    return p;
}

/// Writes the faces of `data` as a corrections folder.
void write_folder(const facet::Dataset& data, const fs::path& folder) {
    for (std::size_t i = 0; i < data.size(); ++i)
        fer::save_face_crop(folder, data.class_names[std::size_t(data.labels[i])], "face", i,
                            data.image(i));
}

/// write_png into a folder made first.
void png(const fs::path& path, const std::uint8_t* pixels) {
    fs::create_directories(path.parent_path());
    facet::write_png(path, pixels, 48, 48);
}

double accuracy(const std::string& model_path, const facet::Dataset& data) {
    fer::TrainedModel t = fer::load_trained(model_path);
    const fer::Evaluation ev = fer::evaluate(t.model, data, t.norm);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < data.size(); ++i) correct += ev.predicted[i] == data.labels[i];
    return double(correct) / double(data.size());
}

/// Every parameter value, then every buffer value, of layers [from, to) of `m`.
std::vector<float> all_values(facet::Sequential<float>& m, std::size_t from, std::size_t to) {
    auto layer_of = [](const std::string& name) {
        return std::stoul(name.substr(0, name.find('.')));
    };
    std::vector<float> v;
    for (const auto& p : m.parameters())
        if (layer_of(p.name) >= from && layer_of(p.name) < to)
            v.insert(v.end(), p.value->begin(), p.value->end());
    for (const auto& named : m.buffers())
        if (layer_of(named.first) >= from && layer_of(named.first) < to)
            v.insert(v.end(), named.second->begin(), named.second->end());
    return v;
}

/// A scratch folder with a parent trained one epoch on 10 synthetic faces per emotion, and those
/// faces as a hard camera sees them filed as its corrections.
struct QuickSetup {
    fs::path dir;
    facet::DataSplits data;
    std::string parent;
    fer::Corrections corrections;
};

QuickSetup quick_setup(const std::string& name) {
    QuickSetup q;
    q.dir = scratch(name);
    q.data = synthetic(10, 2);
    q.parent = (q.dir / "parent.facet").string();
    train_parent(*q.data.training(), q.parent, 2, 1);
    write_folder(fer::shift_dataset(*q.data.training(), hard_camera(), 1), q.dir / "corrections");
    q.corrections = fer::read_corrections(q.dir / "corrections");
    return q;
}

fer::FinetuneConfig quick_finetune(const std::string& parent, const std::string& out) {
    fer::FinetuneConfig c;
    c.parent = parent, c.out = out;
    c.epochs = 5, c.lr = 1e-3, c.min_epoch = 256, c.batch = 32, c.threads = 2;
    c.runs = 1;  // one fine-tuning, unless a test is about the soup of several
    c.progress = false;
    return c;
}

}  // namespace

TEST_CASE("the domain shift is deterministic, changes the faces, and draws cameras from seeds") {
    const facet::Dataset faces = synthetic(2, 1).at("synthetic-train");
    const fer::CameraProfile camera = fer::CameraProfile::from_seed(1);
    const facet::Dataset a = fer::shift_dataset(faces, camera, 1);
    const facet::Dataset b = fer::shift_dataset(faces, camera, 1);
    CHECK(a.pixels == b.pixels);
    CHECK(a.labels == faces.labels);
    CHECK(a.pixels != faces.pixels);
    CHECK(fer::shift_dataset(faces, camera, 2).pixels != a.pixels);  // other noise
    CHECK(fer::CameraProfile::from_seed(2).describe() != camera.describe());
    CHECK(fer::CameraProfile::from_seed(1).describe() == camera.describe());

    // Each defect alone, on a flat gray image: gamma and contrast move it as their formulas say,
    // the JPEG-like step keeps a flat block flat, and noise has the standard deviation asked for.
    fer::CameraProfile plain;
    plain.low_resolution = 0, plain.blur_sigma = 0, plain.cast = {1, 1, 1}, plain.gamma = 1;
    plain.contrast = 1, plain.brightness = 0, plain.noise_sigma = 0, plain.jpeg_quality = 50;
    std::vector<std::uint8_t> flat(48 * 48, 100), out(48 * 48);
    fer::shift_face(plain, 1, 0, flat.data(), out.data(), 48);
    CHECK(out == flat);
    fer::CameraProfile gamma = plain;
    gamma.gamma = 0.5;
    fer::shift_face(gamma, 1, 0, flat.data(), out.data(), 48);
    CHECK(int(out[0]) == int(std::lround(255 * std::sqrt(100.0 / 255))));
    fer::CameraProfile noisy = plain;
    noisy.noise_sigma = 10, noisy.jpeg_quality = 100;
    fer::shift_face(noisy, 1, 0, flat.data(), out.data(), 48);
    double sum = 0, sum_sq = 0;
    for (std::uint8_t v : out) sum += v, sum_sq += double(v) * v;
    const double mean = sum / out.size(), sd = std::sqrt(sum_sq / out.size() - mean * mean);
    CHECK(mean == doctest::Approx(100).epsilon(0.02));
    CHECK(sd == doctest::Approx(10).epsilon(0.1));
}

TEST_CASE("fer correct files a face; refuses an unknown emotion, a bad image, a conflict") {
    const fs::path dir = scratch("correct");
    const facet::Dataset faces = synthetic(1, 1).at("synthetic-train");
    const fs::path face = dir / "face.png";
    png(face, faces.image(0));
    const std::string into = (dir / "corrections").string();

    auto [rc, out] =
        run_cli(fer::correct_cli(), fer::run_correct, {face.string(), "Happy", "--into", into});
    CHECK(rc == 0);
    const fs::path filed = dir / "corrections" / "happy" / "face.png";
    REQUIRE(fs::exists(filed));
    CHECK(facet::load_image(filed).pixels ==
          std::vector<std::uint8_t>(faces.image(0), faces.image(0) + 48 * 48));
    // Filed again under the same emotion: nothing new; under another: refused.
    std::tie(rc, out) =
        run_cli(fer::correct_cli(), fer::run_correct, {face.string(), "happy", "--into", into});
    CHECK(out.find("already filed") != std::string::npos);
    CHECK_THROWS_WITH_AS(
        run_cli(fer::correct_cli(), fer::run_correct, {face.string(), "sad", "--into", into}),
        doctest::Contains("already filed as"), facet::Error);
    CHECK_THROWS_WITH_AS(
        run_cli(fer::correct_cli(), fer::run_correct, {face.string(), "bored", "--into", into}),
        doctest::Contains("angry, disgust, fear, happy, sad, surprise, neutral"), facet::Error);
    facet_test::write_text(dir / "broken.png", "not a png");
    CHECK_THROWS_WITH_AS(run_cli(fer::correct_cli(), fer::run_correct,
                                 {(dir / "broken.png").string(), "sad", "--into", into}),
                         doctest::Contains("broken.png"), facet::Error);
    CHECK(fer::read_corrections(into).faces.size() == 1);
}

TEST_CASE("corrections: duplicates are used once and reported, conflicts name both files") {
    const fs::path dir = scratch("corrections_read");
    const facet::Dataset faces = synthetic(1, 1).at("synthetic-train");
    png(dir / "ok" / "happy" / "a.png", faces.image(0));
    png(dir / "ok" / "happy" / "b.png", faces.image(0));  // duplicate
    png(dir / "ok" / "sad" / "c.png", faces.image(1));
    const fer::Corrections c = fer::read_corrections(dir / "ok");
    CHECK(c.faces.size() == 2);
    REQUIRE(c.duplicates.size() == 1);
    CHECK(c.duplicates[0].second.find("b.png") != std::string::npos);
    CHECK(c.fingerprint().find("of 2 faces") != std::string::npos);

    png(dir / "bad" / "happy" / "a.png", faces.image(0));
    png(dir / "bad" / "sad" / "z.png", faces.image(0));
    try {
        fer::read_corrections(dir / "bad");
        FAIL("a conflict was accepted");
    } catch (const facet::Error& e) {
        const std::string what = e.what();
        CHECK(what.find("a.png") != std::string::npos);
        CHECK(what.find("z.png") != std::string::npos);
        CHECK(what.find("two emotions") != std::string::npos);
    }
    png(dir / "odd" / "bored" / "a.png", faces.image(0));
    CHECK_THROWS_WITH_AS(fer::read_corrections(dir / "odd"), doctest::Contains("not an emotion"),
                         facet::Error);
}

TEST_CASE("fer predict --save-faces writes each classified crop under its predicted emotion") {
    const fs::path dir = scratch("save_faces");
    const facet::Dataset faces = synthetic(1, 1).at("synthetic-train");
    train_parent(faces, (dir / "m.facet").string(), 3, 1);
    png(dir / "in" / "x.png", faces.image(3));
    auto [rc, out] = run_cli(fer::predict_cli(), fer::run_predict,
                             {"--model", (dir / "m.facet").string(), "--no-detect", "--json",
                              "--save-faces", (dir / "faces").string(), (dir / "in").string()});
    REQUIRE(rc == 0);
    const std::string emotion =
        nlohmann::json::parse(out).at(0).at("faces").at(0).at("emotion").get<std::string>();
    const fs::path saved = dir / "faces" / emotion / "x_0.png";
    REQUIRE(fs::exists(saved));
    CHECK(facet::load_image(saved).pixels ==
          std::vector<std::uint8_t>(faces.image(3), faces.image(3) + 48 * 48));
}

TEST_CASE("fer finetune raises accuracy on held-out faces of a shifted domain") {
    const fs::path dir = scratch("finetune_gain");
    const facet::DataSplits data = synthetic(60, 30);
    const facet::Dataset& train = *data.training();
    const std::string parent = (dir / "parent.facet").string();
    train_parent(train, parent, 1, 10);
    const fer::CameraProfile camera = fer::CameraProfile::from_seed(1);
    // Corrections: shifted faces of the training split; held-out domain: the shifted test split.
    const facet::Dataset corrections_data =
        fer::detail::sample_of(fer::shift_dataset(train, camera, 5), 140, 3);
    const facet::Dataset shifted_test = fer::shift_dataset(data.at("synthetic-test"), camera, 6);
    write_folder(corrections_data, dir / "corrections");
    const fer::Corrections corrections = fer::read_corrections(dir / "corrections");
    REQUIRE(corrections.faces.size() == 140);

    const std::string child = (dir / "child.facet").string();
    fer::FinetuneConfig config = quick_finetune(parent, child);
    config.epochs = 10, config.lr = 2e-3;
    config.holdout = 0.2;  // held out to report (auto holds none out when averaging)
    const fer::FinetuneSummary s = fer::finetune_on(config, corrections, train);
    CHECK(s.held_out + s.trained_on == 140);
    CHECK(s.parent_faces == s.held_out);  // by default as many of the parent's as held out
    CHECK(s.choosing == 2 * s.held_out);
    CHECK(s.held_out >= 21);  // about 20 % of each emotion's
    CHECK(s.held_out <= 35);
    const double before = accuracy(parent, shifted_test), after = accuracy(child, shifted_test);
    const double clean_before = accuracy(parent, data.at("synthetic-test")),
                 clean_after = accuracy(child, data.at("synthetic-test"));
    MESSAGE("shifted: ", before, " -> ", after, "; clean: ", clean_before, " -> ", clean_after);
    CHECK(after >= before + 0.10);
    CHECK(clean_after >= clean_before - 0.05);

    // Where the new model came from.
    const facet::ModelFile<float> file = facet::load_model_file<float>(child);
    CHECK(file.provenance.note("parent") == "parent.facet");
    CHECK(file.provenance.note("parent_fingerprint") == fer::detail::file_fingerprint(parent));
    CHECK(file.provenance.note("corrections") == "140");
    CHECK(file.provenance.note("corrections_fingerprint") == corrections.fingerprint());
    CHECK(file.provenance.data_fingerprint == corrections.fingerprint());
}

TEST_CASE("fer finetune --holdout auto: every correction trained on when none would choose") {
    fer::FinetuneConfig c;  // the defaults: 8 epochs, averaged from the 4th, no blend
    CHECK(c.holdout_fraction() == 0);
    c.blend = 0.3;  // a fixed blend chooses nothing either
    CHECK(c.holdout_fraction() == 0);
    c.blend = -1;  // --blend auto chooses the share on the held-out faces
    CHECK(c.holdout_fraction() == doctest::Approx(0.2));
    c.blend = 0, c.average_from = 0;  // the held-out faces choose the epoch
    CHECK(c.holdout_fraction() == doctest::Approx(0.2));
    c.average_from = 9;  // past the last epoch: no averaging
    CHECK(c.holdout_fraction() == doctest::Approx(0.2));
    c.holdout = 0.5, c.average_from = 4;  // a fraction given is a fraction used
    CHECK(c.holdout_fraction() == doctest::Approx(0.5));

    const QuickSetup q = quick_setup("finetune_holdout_auto");
    fer::FinetuneConfig tune = quick_finetune(q.parent, (q.dir / "auto.facet").string());
    tune.epochs = 2, tune.average_from = 1;
    const fer::FinetuneSummary s = fer::finetune_on(tune, q.corrections, *q.data.training());
    CHECK(s.held_out == 0);
    CHECK(s.trained_on == q.corrections.faces.size());
    // On the command line.
    static double parsed = -2;
    auto fraction = [&](std::vector<std::string> options) {
        std::vector<std::string> args = {"--model",       q.parent,
                                         "--corrections", (q.dir / "corrections").string(),
                                         "--out",         (q.dir / "cli.facet").string()};
        args.insert(args.end(), options.begin(), options.end());
        parsed = -2;
        run_cli(
            fer::finetune_cli(),
            [](const fer::Cli& cli) {
                parsed = fer::finetune_config(cli).holdout_fraction();
                return 0;
            },
            args);
        return parsed;
    };
    CHECK(fraction({}) == 0);
    CHECK(fraction({"--holdout", "auto", "--average-from", "0"}) == doctest::Approx(0.2));
    CHECK(fraction({"--blend", "auto"}) == doctest::Approx(0.2));
    CHECK(fraction({"--holdout", "0.3"}) == doctest::Approx(0.3));
    for (const char* bad : {"1", "-0.1", "x"})
        CHECK_THROWS_WITH_AS(
            run_cli(fer::finetune_cli(), fer::run_finetune,
                    {"--model", q.parent, "--corrections", (q.dir / "corrections").string(),
                     "--out", (q.dir / "bad.facet").string(), "--holdout", bad}),
            doctest::Contains("--holdout"), facet::Error);
}

TEST_CASE("fer finetune --parent-faces: the held-out corrections repeated to weigh as much") {
    CHECK(fer::detail::heldout_repeats(0, 1000) == 1);
    CHECK(fer::detail::heldout_repeats(40, 0) == 1);
    CHECK(fer::detail::heldout_repeats(40, 1000) == 25);
    CHECK(fer::detail::heldout_repeats(40, 1019) == 25);
    CHECK(fer::detail::heldout_repeats(40, 1020) == 26);  // the nearest whole number
    CHECK(fer::detail::heldout_repeats(40, 10) == 1);

    const fs::path dir = scratch("finetune_parent_faces");
    const facet::DataSplits data = synthetic(40, 2);  // 28 validation faces of the parent's
    const facet::Dataset& train = *data.training();
    const std::string parent = (dir / "parent.facet").string();
    train_parent(train, parent, 2, 1);
    write_folder(fer::shift_dataset(*synthetic(5, 1).training(), hard_camera(), 1),
                 dir / "corrections");  // 5 faces of each emotion
    const fer::Corrections corrections = fer::read_corrections(dir / "corrections");
    fer::FinetuneConfig c = quick_finetune(parent, (dir / "child.facet").string());
    c.epochs = 1, c.parent_faces = 21;
    const fer::FinetuneSummary s = fer::finetune_on(c, corrections, train);
    REQUIRE(s.held_out == 7);  // 20 % of each emotion's 5
    CHECK(s.parent_faces == 21);
    CHECK(s.choosing == 42);  // the 7 held out three times, and 21 of the parent's
    CHECK_THROWS_WITH_AS(
        run_cli(fer::finetune_cli(), fer::run_finetune,
                {"--model", parent, "--corrections", (dir / "corrections").string(), "--out",
                 (dir / "bad.facet").string(), "--parent-faces", "-1"}),
        doctest::Contains("--parent-faces"), facet::Error);
}

TEST_CASE("fer finetune --blend: the parent's share of the weights written, fixed or chosen") {
    const QuickSetup q = quick_setup("finetune_blend");
    const fs::path& dir = q.dir;
    const std::string& parent = q.parent;
    const facet::Dataset& train = *q.data.training();
    const fer::Corrections& corrections = q.corrections;
    auto values = [](const std::string& path) {
        facet::Sequential<float> m = facet::load_model_file<float>(path).model;
        return all_values(m, 0, m.size());
    };
    // The same seed fine-tunes the same weights each time; only the blend differs.
    auto tune = [&](const std::string& path, double blend) {
        fer::FinetuneConfig c = quick_finetune(parent, path);
        c.epochs = 2, c.blend = blend;
        return fer::finetune_on(c, corrections, train);
    };
    const std::string plain_path = (dir / "plain.facet").string(),
                      whole_path = (dir / "parent-again.facet").string(),
                      half_path = (dir / "half.facet").string(),
                      chosen_path = (dir / "auto.facet").string();
    const fer::FinetuneSummary plain = tune(plain_path, 0), whole = tune(whole_path, 1);
    tune(half_path, 0.5);
    CHECK(plain.blend == 0);
    CHECK(whole.blend == 1);
    const std::vector<float> p = values(parent), t = values(plain_path), w = values(whole_path),
                             h = values(half_path);
    REQUIRE(t.size() == p.size());
    CHECK(t != p);
    CHECK(w == p);  // share 1: the parent's weights and statistics, exactly
    std::size_t off = 0;
    for (std::size_t k = 0; k < h.size(); ++k)
        off += std::fabs(double(h[k]) - 0.5 * (double(t[k]) + double(p[k]))) >
               1e-7 * std::fabs(double(h[k])) + 1e-30;
    CHECK(off == 0);
    const facet::ModelFile<float> file = facet::load_model_file<float>(half_path);
    CHECK(file.provenance.note("blend") == "0.5");
    CHECK(file.provenance.note("parent") == "parent.facet");
    bool noted = false;
    for (const auto& [k, v] : file.metadata) noted |= k == "finetune.blend" && v == "0.5";
    CHECK(noted);

    // auto: one share of the grid, chosen on the faces that chose the epoch, and recorded.
    const fer::FinetuneSummary chosen = tune(chosen_path, -1);
    const std::vector<double> grid = fer::detail::blend_grid();
    CHECK(std::find(grid.begin(), grid.end(), chosen.blend) != grid.end());
    CHECK(facet::load_model_file<float>(chosen_path).provenance.note("blend") ==
          fer::detail::share_text(chosen.blend));

    const std::string corrections_dir = (dir / "corrections").string(),
                      out = (dir / "bad.facet").string();
    for (const std::vector<std::string>& bad : {std::vector<std::string>{"--blend", "1.5"},
                                                {"--blend", "-0.5"},
                                                {"--blend", "x"},
                                                {"--blend", "auto", "--holdout", "0"}}) {
        std::vector<std::string> args = {"--model",       parent,  "--corrections",
                                         corrections_dir, "--out", out};
        args.insert(args.end(), bad.begin(), bad.end());
        CHECK_THROWS_WITH_AS(run_cli(fer::finetune_cli(), fer::run_finetune, args),
                             doctest::Contains("--blend"), facet::Error);
    }
    CHECK_FALSE(fs::exists(out));
}

TEST_CASE(
    "fer finetune --anchor: the weights stay nearer the parent's, uniformly or by Fisher "
    "importance; bad values refused") {
    const QuickSetup q = quick_setup("finetune_anchor");
    auto parameters_of = [](const std::string& file) {
        fer::TrainedModel m = fer::load_trained(file);
        std::vector<float> v;
        for (const auto& p : m.model.parameters())
            v.insert(v.end(), p.value->begin(), p.value->end());
        return v;
    };
    const std::vector<float> parent = parameters_of(q.parent);
    std::string importance = "uniform";
    auto distance_to_parent = [&](double anchor, const std::string& name) {
        fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / name).string());
        c.anchor = anchor;
        c.anchor_importance = importance;
        fer::finetune_on(c, q.corrections, *q.data.training());
        const std::vector<float> w = parameters_of(c.out);
        REQUIRE(w.size() == parent.size());
        double d = 0;
        for (std::size_t i = 0; i < w.size(); ++i) d += (w[i] - parent[i]) * (w[i] - parent[i]);
        return std::sqrt(d);
    };
    const double free = distance_to_parent(0, "free.facet");
    const double anchored = distance_to_parent(500, "anchored.facet");  // lr x 500 = 0.5 at most
    CHECK(free > 0);
    CHECK(anchored < 0.5 * free);
    // Weighted by the Fisher importance: the same mean pull, spread otherwise.
    importance = "fisher";
    const double weighted = distance_to_parent(500, "weighted.facet");
    CHECK(weighted < free);
    CHECK(weighted != anchored);
    CHECK_THROWS_WITH_AS(
        run_cli(
            fer::finetune_cli(), fer::run_finetune,
            {"--model", q.parent, "--corrections", (q.dir / "corrections").string(), "--out",
             (q.dir / "bad.facet").string(), "--anchor", "1", "--anchor-importance", "hessian"}),
        doctest::Contains("--anchor-importance"), facet::Error);
    for (const char* bad : {"-1", "nan", "2000"})  // 2000 x the default rate 6e-4 > 1
        CHECK_THROWS_WITH_AS(
            run_cli(fer::finetune_cli(), fer::run_finetune,
                    {"--model", q.parent, "--corrections", (q.dir / "corrections").string(),
                     "--out", (q.dir / "bad.facet").string(), "--anchor", bad}),
            doctest::Contains("--anchor"), facet::Error);
}

TEST_CASE(
    "fer finetune --warmup: a gentler start moves the weights otherwise; bad values refused") {
    const QuickSetup q = quick_setup("finetune_warmup");
    auto weights_after = [&](double warmup, const std::string& name) {
        fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / name).string());
        c.epochs = 2, c.average_from = 0, c.warmup = warmup;
        fer::finetune_on(c, q.corrections, *q.data.training());
        facet::Sequential<float> m = facet::load_model_file<float>(c.out).model;
        return all_values(m, 0, m.size());
    };
    facet::Sequential<float> parent = facet::load_model_file<float>(q.parent).model;
    const std::vector<float> before = all_values(parent, 0, parent.size());
    const std::vector<float> plain = weights_after(0, "plain.facet");
    const std::vector<float> warmed = weights_after(1.5, "warmed.facet");
    CHECK(plain != before);
    CHECK(warmed != before);
    CHECK(warmed != plain);
    for (const char* bad : {"-1", "nan", "8"})  // 8: not fewer than the default 8 epochs
        CHECK_THROWS_WITH_AS(
            run_cli(fer::finetune_cli(), fer::run_finetune,
                    {"--model", q.parent, "--corrections", (q.dir / "corrections").string(),
                     "--out", (q.dir / "bad.facet").string(), "--warmup", bad}),
            doctest::Contains("--warmup"), facet::Error);
}

TEST_CASE(
    "fer finetune --optimizer: SGD with Nesterov momentum trains otherwise than AdamW; bad "
    "values refused") {
    const QuickSetup q = quick_setup("finetune_optimizer");
    auto weights_after = [&](const std::string& optimizer, double lr) {
        fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / (optimizer + ".facet")).string());
        c.epochs = 2, c.average_from = 0, c.optimizer = optimizer, c.lr = lr, c.weight_decay = 0;
        fer::finetune_on(c, q.corrections, *q.data.training());
        facet::Sequential<float> m = facet::load_model_file<float>(c.out).model;
        return all_values(m, 0, m.size());
    };
    facet::Sequential<float> parent = facet::load_model_file<float>(q.parent).model;
    const std::vector<float> before = all_values(parent, 0, parent.size());
    const std::vector<float> adamw = weights_after("adamw", 6e-4);
    const std::vector<float> sgd = weights_after("nesterov", 0.01);
    CHECK(adamw != before);
    CHECK(sgd != before);
    CHECK(sgd != adamw);
    const std::vector<std::pair<std::string, std::string>> bad = {{"--optimizer", "adam"},
                                                                  {"--optimizer", ""},
                                                                  {"--weight-decay", "-0.1"},
                                                                  {"--weight-decay", "nan"}};
    for (const auto& [option, value] : bad)
        CHECK_THROWS_WITH_AS(
            run_cli(fer::finetune_cli(), fer::run_finetune,
                    {"--model", q.parent, "--corrections", (q.dir / "corrections").string(),
                     "--out", (q.dir / "bad.facet").string(), option, value}),
            doctest::Contains(option.c_str()), facet::Error);
}

TEST_CASE("fer finetune --reestimate-bn: the averaged weights kept, their statistics recomputed") {
    const QuickSetup q = quick_setup("finetune_reestimate_bn");
    auto tune = [&](const std::string& how) {
        fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / (how + ".facet")).string());
        c.epochs = 3, c.average_from = 2, c.reestimate_bn = how;
        fer::finetune_on(c, q.corrections, *q.data.training());
        return fer::load_trained(c.out);
    };
    auto split = [](fer::TrainedModel& m) {  // (parameters, buffers)
        std::vector<float> p, b;
        for (const auto& x : m.model.parameters())
            p.insert(p.end(), x.value->begin(), x.value->end());
        for (const auto& x : m.model.buffers())
            b.insert(b.end(), x.second->begin(), x.second->end());
        return std::make_pair(p, b);
    };
    fer::TrainedModel none = tune("none"), mix = tune("mix"), rehearsal = tune("rehearsal");
    const auto [p_none, b_none] = split(none);
    const auto [p_mix, b_mix] = split(mix);
    const auto [p_rehearsal, b_rehearsal] = split(rehearsal);
    CHECK(p_mix == p_none);  // the same training: only the statistics differ
    CHECK(p_rehearsal == p_none);
    CHECK(b_mix != b_none);
    CHECK(b_rehearsal != b_mix);
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--reestimate-bn", "all"},
          std::vector<std::string>{"--reestimate-bn", "mix", "--average-from", "0"}}) {
        std::vector<std::string> args = {"--model",       q.parent,
                                         "--corrections", (q.dir / "corrections").string(),
                                         "--out",         (q.dir / "bad.facet").string()};
        args.insert(args.end(), bad.begin(), bad.end());
        CHECK_THROWS_WITH_AS(run_cli(fer::finetune_cli(), fer::run_finetune, args),
                             doctest::Contains("--reestimate-bn"), facet::Error);
    }
    CHECK(!fs::exists(q.dir / "bad.facet"));
}

TEST_CASE("fer finetune: an epoch whose last batch would hold one face still trains") {
    // Batch norm cannot train on one face; such a last batch is dropped instead of failing.
    const QuickSetup q = quick_setup("finetune_batch_of_one");
    fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / "probe.facet").string());
    c.epochs = 1, c.min_epoch = 1;  // corrections once: the epoch is trained_on + rehearsal faces
    const fer::FinetuneSummary probe = fer::finetune_on(c, q.corrections, *q.data.training());
    const std::size_t faces = probe.trained_on + probe.rehearsal;
    REQUIRE(faces > 3);
    c.out = (q.dir / "one_left.facet").string();
    c.batch = faces - 1;  // faces = 1 x batch + 1
    CHECK_NOTHROW(fer::finetune_on(c, q.corrections, *q.data.training()));
    CHECK(fs::exists(c.out));
}

TEST_CASE("fer finetune --average-from: the mean of the weights at the ends of the epochs") {
    // The callback alone: the running mean against the mean of what each epoch ended with. (The
    // trainer owns its callbacks and is gone after train_parent: what they see is kept outside.)
    struct Recorder : facet::Callback {
        explicit Recorder(std::vector<std::vector<float>>& seen) : seen_(seen) {}
        void on_epoch_end(facet::Trainer& t, const facet::EpochReport&) override {
            seen_.push_back(all_values(t.model(), 0, t.model().size()));
        }
        std::vector<std::vector<float>>& seen_;
    };
    const fs::path dir = scratch("finetune_average");
    const facet::DataSplits data = synthetic(6, 1);
    facet::Sequential<float> average = small_cnn(99);
    std::vector<std::vector<float>> seen;
    train_parent(*data.training(), (dir / "run.facet").string(), 4, 4, [&](facet::Trainer& t) {
        t.add<Recorder>(seen);
        t.add<facet::WeightAverage>(average, 2);
    });
    REQUIRE(seen.size() == 4);
    const std::vector<float> got = all_values(average, 0, average.size());
    REQUIRE(got.size() == seen[0].size());
    std::size_t off = 0;
    for (std::size_t k = 0; k < got.size(); ++k) {
        const double want = (double(seen[1][k]) + double(seen[2][k]) + double(seen[3][k])) / 3;
        off += std::fabs(double(got[k]) - want) > 1e-6 * std::fabs(want) + 1e-7;
    }
    CHECK(off == 0);
    CHECK(seen[3] != got);  // not simply the last epoch's

    // In fer finetune: the average is what is written, and the file says so.
    const QuickSetup q = quick_setup("finetune_average_cli");
    fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / "average.facet").string());
    c.epochs = 3, c.average_from = 2;
    const fer::FinetuneSummary s = fer::finetune_on(c, q.corrections, *q.data.training());
    CHECK(s.epoch == 3);
    bool noted = false;
    for (const auto& kv : facet::load_model_file<float>(c.out).metadata)
        noted |= kv.first == "finetune.average_from" && kv.second == "2";
    CHECK(noted);
    CHECK_THROWS_WITH_AS(
        run_cli(fer::finetune_cli(), fer::run_finetune,
                {"--model", q.parent, "--corrections", (q.dir / "corrections").string(), "--out",
                 (q.dir / "bad.facet").string(), "--average-from", "-1"}),
        doctest::Contains("--average-from"), facet::Error);
}

TEST_CASE("fer finetune --runs: the mean of the runs' weights, each run its own seed") {
    const QuickSetup q = quick_setup("finetune_runs");
    auto tune = [&](const std::string& name, std::size_t runs, std::uint64_t seed) {
        fer::FinetuneConfig c = quick_finetune(q.parent, (q.dir / name).string());
        c.epochs = 2, c.average_from = 1, c.runs = runs, c.seed = seed;
        fer::finetune_on(c, q.corrections, *q.data.training());
        return c.out;
    };
    const std::string soup = tune("soup.facet", 2, 5);
    const std::string first = tune("seed5.facet", 1, 5), second = tune("seed6.facet", 1, 6);
    facet::ModelFile<float> a = facet::load_model_file<float>(first),
                            b = facet::load_model_file<float>(second),
                            s = facet::load_model_file<float>(soup);
    const std::vector<float> va = all_values(a.model, 0, a.model.size()),
                             vb = all_values(b.model, 0, b.model.size()),
                             vs = all_values(s.model, 0, s.model.size());
    REQUIRE(va.size() == vs.size());
    REQUIRE(vb.size() == vs.size());
    CHECK(va != vb);  // the seeds made two different runs
    std::size_t off = 0;
    for (std::size_t k = 0; k < vs.size(); ++k) {
        const double want = (double(va[k]) + double(vb[k])) / 2;
        off += std::fabs(double(vs[k]) - want) > 1e-6 * std::fabs(want) + 1e-7;
    }
    CHECK(off == 0);
    bool noted = false;
    for (const auto& kv : s.metadata) noted |= kv.first == "finetune.runs" && kv.second == "2";
    CHECK(noted);
    bool recorded = false;
    for (const auto& kv : s.provenance.notes)
        recorded |= kv.first == "seeds" && kv.second == "5 to 6";
    CHECK(recorded);
    for (const auto& entry : fs::directory_iterator(q.dir))  // the runs' files are gone
        CHECK(entry.path().extension() != ".tmp");

    CHECK_THROWS_WITH_AS(
        run_cli(fer::finetune_cli(), fer::run_finetune,
                {"--model", q.parent, "--corrections", (q.dir / "corrections").string(), "--out",
                 (q.dir / "bad.facet").string(), "--runs", "0"}),
        doctest::Contains("--runs"), facet::Error);
    CHECK_FALSE(fs::exists(q.dir / "bad.facet"));
}

TEST_CASE("fer finetune: never the parent as output; --freeze-backbone, --freeze-bn") {
    const QuickSetup q = quick_setup("finetune_safety");
    const fs::path& dir = q.dir;
    const std::string& parent = q.parent;
    const facet::Dataset& train = *q.data.training();
    const fer::Corrections& corrections = q.corrections;
    const std::string parent_bytes = facet::read_file_contents(parent, 1 << 30);

    for (const std::string& out : {parent, (dir / "." / "parent.facet").string()})
        CHECK_THROWS_WITH_AS(fer::finetune_on(quick_finetune(parent, out), corrections, train),
                             doctest::Contains("never overwritten"), facet::Error);
    CHECK(facet::read_file_contents(parent, 1 << 30) == parent_bytes);

    fer::FinetuneConfig c = quick_finetune(parent, (dir / "frozen.facet").string());
    c.freeze_backbone = true, c.epochs = 2;
    fer::finetune_on(c, corrections, train);
    facet::Sequential<float> before = facet::load_model_file<float>(parent).model;
    facet::Sequential<float> after = facet::load_model_file<float>(c.out).model;
    REQUIRE(fer::detail::head_start(after) == 9);                  // the layers after Flatten
    CHECK(all_values(before, 0, 9) == all_values(after, 0, 9));    // weights and BN statistics
    CHECK(all_values(before, 9, 13) != all_values(after, 9, 13));  // the classifier learned

    // --freeze-bn: every batch norm keeps the parent's running statistics; everything learns.
    fer::FinetuneConfig bn = quick_finetune(parent, (dir / "frozen-bn.facet").string());
    bn.freeze_bn = true, bn.epochs = 2;
    fer::finetune_on(bn, corrections, train);
    facet::ModelFile<float> tuned = facet::load_model_file<float>(bn.out);
    auto statistics = [](facet::Sequential<float>& m) {
        std::vector<float> v;
        for (const auto& [name, t] : m.buffers()) v.insert(v.end(), t->begin(), t->end());
        return v;
    };
    REQUIRE(!statistics(before).empty());
    CHECK(statistics(tuned.model) == statistics(before));
    CHECK(all_values(tuned.model, 0, 13) != all_values(before, 0, 13));
}

TEST_CASE("fer finetune --distill keeps the answers on old faces closer to the parent's") {
    const fs::path dir = scratch("finetune_distill");
    const facet::DataSplits data = synthetic(30, 10);
    const facet::Dataset& train = *data.training();
    const facet::Dataset& old_faces = data.at("synthetic-test");
    const std::string parent = (dir / "parent.facet").string();
    train_parent(train, parent, 3, 4);
    write_folder(fer::detail::sample_of(fer::shift_dataset(train, hard_camera(), 1), 60, 2),
                 dir / "corrections");
    const fer::Corrections corrections = fer::read_corrections(dir / "corrections");

    // Mean KL(parent || child) over faces of the old domain: how far the child's answers moved.
    fer::TrainedModel p = fer::load_trained(parent);
    const fer::Evaluation before = fer::evaluate(p.model, old_faces, p.norm);
    auto drift = [&](double distill) {
        fer::FinetuneConfig c = quick_finetune(
            parent, (dir / ("child-" + std::to_string(distill) + ".facet")).string());
        c.epochs = 4, c.lr = 3e-3, c.holdout = 0, c.distill = distill;
        fer::finetune_on(c, corrections, train);
        fer::TrainedModel child = fer::load_trained(c.out);
        const fer::Evaluation after = fer::evaluate(child.model, old_faces, child.norm);
        double kl = 0;
        for (std::size_t i = 0; i < before.probabilities.size(); ++i) {
            const double q = before.probabilities[i];
            if (q > 0) kl += q * std::log(q / std::max(1e-12, double(after.probabilities[i])));
        }
        return kl / double(old_faces.size());
    };
    const double plain = drift(0), distilled = drift(1);
    MESSAGE("KL(parent || child) on old faces: labels only ", plain, ", distilled ", distilled);
    CHECK(distilled < 0.75 * plain);

    const std::string out = (dir / "bad.facet").string();
    for (const char* bad : {"1.5", "-0.1", "x"})
        CHECK_THROWS_WITH_AS(
            run_cli(fer::finetune_cli(), fer::run_finetune,
                    {"--model", parent, "--corrections", (dir / "corrections").string(), "--out",
                     out, "--distill", bad}),
            doctest::Contains("distill"), facet::Error);
    CHECK_FALSE(fs::exists(out));
}

TEST_CASE("fer eval's test-time views: ten crops and their mirrors, averaged") {
    const fs::path dir = scratch("views");
    const facet::DataSplits data = synthetic(10, 3);
    const facet::Dataset& train = *data.training();
    const facet::Dataset& test = data.at("synthetic-test");
    const std::string a = (dir / "a.facet").string();
    train_parent(train, a, 1, 1);
    fer::TrainedModel t = fer::load_trained(a);

    fer::TestViews views;
    views.crop = 40, views.ten_crop = true, views.flip = true;
    const std::vector<facet::AugmentParams> params = views.params();
    REQUIRE(params.size() == 10);
    // By hand: every view of every face through the model, the ten probabilities averaged.
    const std::size_t pixels = test.image_size();
    std::vector<double> want;
    for (const facet::AugmentParams& view : params) {
        facet::Tensor<float> x(facet::Shape{test.size(), 1, test.height, test.width});
        for (std::size_t i = 0; i < test.size(); ++i) {
            facet::apply_augment(test.image(i), test.height, test.width, x.data() + i * pixels,
                                 view, facet::Padding::Reflect);
            t.norm.apply(x.data() + i * pixels, pixels);
        }
        const facet::Tensor<float>& p = t.model.predict(x);
        want.resize(p.size(), 0.0);
        for (std::size_t k = 0; k < p.size(); ++k) want[k] += p[k] / 10.0;
    }
    const fer::Evaluation ten = fer::evaluate(t.model, test, t.norm, 7, views);  // odd batches
    REQUIRE(ten.probabilities.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k)
        CHECK(ten.probabilities[k] == doctest::Approx(want[k]).epsilon(1e-5));
    // The five places differ: the corner crops are not all the centre one.
    std::set<std::pair<double, double>> places;
    for (const facet::AugmentParams& p : params) places.insert({p.crop_x, p.crop_y});
    CHECK(places.size() == 5);
    // A centre crop of the whole width is the face itself.
    fer::TestViews whole;
    whole.crop = static_cast<int>(test.width);
    const fer::Evaluation plain = fer::evaluate(t.model, test, t.norm);
    const fer::Evaluation same = fer::evaluate(t.model, test, t.norm, 256, whole);
    for (std::size_t k = 0; k < plain.probabilities.size(); ++k)
        CHECK(same.probabilities[k] == doctest::Approx(plain.probabilities[k]).epsilon(1e-6));
    // fer eval takes them from the command line, and refuses a crop larger than the faces.
    auto [rc, out] = run_cli(fer::eval_cli(), fer::run_eval,
                             {"--model", a, "--ten-crop", "40", "--json", "--threads", "2"});
    REQUIRE(rc == 0);
    const nlohmann::json json = nlohmann::json::parse(out);
    CHECK(json.at("ten_crop") == 40);
    CHECK(json.at("flip_tta") == true);
    CHECK_THROWS_WITH_AS(
        run_cli(fer::eval_cli(), fer::run_eval, {"--model", a, "--ten-crop", "49"}),
        doctest::Contains("crop side"), facet::Error);
    CHECK_THROWS_WITH_AS(run_cli(fer::eval_cli(), fer::run_eval,
                                 {"--model", a, "--ten-crop", "40", "--center-crop", "40"}),
                         doctest::Contains("not both"), facet::Error);
}

TEST_CASE("fer eval: an ensemble averages the probabilities; --compare shows the differences") {
    const fs::path dir = scratch("ensemble");
    const facet::DataSplits data = synthetic(10, 3);
    const facet::Dataset& train = *data.training();
    const facet::Dataset& test = data.at("synthetic-test");
    const std::string a = (dir / "a.facet").string(), b = (dir / "b.facet").string();
    train_parent(train, a, 1, 1);
    // b: another model with a's normalisation (copied notes), so the two may be averaged.
    {
        facet::ModelFile<float> fa = facet::load_model_file<float>(a);
        facet::Sequential<float> other = small_cnn(9);
        facet::save(other, b, fa.metadata);
    }
    std::vector<fer::TrainedModel> models;
    models.push_back(fer::load_trained(a));
    models.push_back(fer::load_trained(a));
    const fer::Evaluation single = fer::evaluate(models[0].model, test, models[0].norm);
    const fer::Evaluation self =
        fer::evaluate_ensemble(models, {a, a}, test, 256, fer::TestViews{});
    CHECK(self.probabilities == single.probabilities);  // (p + p) / 2 = p exactly
    CHECK(self.predicted == single.predicted);

    models[1] = fer::load_trained(b);
    const fer::Evaluation eb = fer::evaluate(models[1].model, test, models[1].norm);
    const fer::Evaluation pair =
        fer::evaluate_ensemble(models, {a, b}, test, 256, fer::TestViews{});
    for (std::size_t k = 0; k < pair.probabilities.size(); ++k)
        CHECK(pair.probabilities[k] ==
              float((double(single.probabilities[k]) + double(eb.probabilities[k])) / 2));
    for (std::size_t i = 0; i < test.size(); ++i)
        CHECK(pair.predicted[i] ==
              facet::argmax_row(pair.probabilities.data() + i * pair.classes, pair.classes));

    // Another normalisation: refused, naming both files.
    {
        facet::ModelFile<float> fb = facet::load_model_file<float>(b);
        for (auto& [k, v] : fb.metadata)
            if (k == "normalization.mean") v = "0.25";
        facet::save(fb.model, (dir / "c.facet").string(), fb.metadata);
    }
    models[1] = fer::load_trained((dir / "c.facet").string());
    CHECK_THROWS_WITH_AS(
        fer::evaluate_ensemble(models, {a, "c.facet"}, test, 256, fer::TestViews{}),
        doctest::Contains("same input normalisation"), facet::Error);

    // fer eval --model A --model A prints A's figures; --compare A B the per-class differences.
    auto [rc, out] = run_cli(fer::eval_cli(), fer::run_eval,
                             {"--model", a, "--model", a, "--json", "--threads", "2"});
    REQUIRE(rc == 0);
    const nlohmann::json ensemble = nlohmann::json::parse(out);
    std::tie(rc, out) = run_cli(fer::eval_cli(), fer::run_eval, {"--model", a, "--json"});
    CHECK(nlohmann::json::parse(out).at("accuracy") == ensemble.at("accuracy"));
    CHECK(ensemble.at("models").size() == 2);
    std::tie(rc, out) =
        run_cli(fer::eval_cli(), fer::run_eval, {"--compare", a, b, "--json", "--threads", "2"});
    REQUIRE(rc == 0);
    const nlohmann::json cmp = nlohmann::json::parse(out);
    CHECK(cmp.at("delta").at("accuracy").get<double>() ==
          doctest::Approx(cmp.at("new").at("accuracy").get<double>() -
                          cmp.at("old").at("accuracy").get<double>()));
    CHECK(cmp.at("delta").at("per_class").size() == 7);
    std::tie(rc, out) = run_cli(fer::eval_cli(), fer::run_eval, {"--compare", a, b});
    CHECK(out.find("difference") != std::string::npos);
    CHECK(out.find("surprise") != std::string::npos);
    CHECK_THROWS_WITH_AS(run_cli(fer::eval_cli(), fer::run_eval, {"--compare", a}),
                         doctest::Contains("OLD and NEW"), facet::Error);
}
