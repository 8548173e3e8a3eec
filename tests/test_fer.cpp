// End-to-end tests of the fer program's pieces on small data: training writes the model, the
// checkpoint and the log; an interrupted run resumed from its checkpoint ends with exactly the
// weights of an uninterrupted one; a saved model predicts what the trained one did; the report is
// a well-formed page; bad input gives clear errors; (when FER-2013 is configured) a short
// run on real FER-2013 images goes through; steps with NaN or infinite values stop the run or are
// skipped without touching the saved files; two runs with the same seed write the same bytes; and
// SIGINT stops after a step with a checkpoint that resumes exactly.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fer/evaluate.hpp"
#include "fer/predict.hpp"
#include "fer/report.hpp"
#include "fer/train.hpp"
#include "fer2013_dir.hpp"
#include "fer_command.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

facet::DataSplits small_synthetic() {
    fer::SyntheticFaceOptions o;
    o.train_per_class = 12;
    o.test_per_class = 4;
    return fer::make_synthetic_faces(o);
}

fer::TrainConfig small_config(const std::string& out) {
    fer::TrainConfig c;
    c.out = out;
    c.epochs = 2;
    c.batch = 16;
    c.threads = 2;
    c.seed = 5;
    c.checkpoint_every = 0;
    return c;
}

using facet_test::scratch;

std::vector<std::string> lines_of(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

/// The log's epoch records (the lines without an "event" key: the validation split and the test
/// results are records of their own), parsed.
std::vector<nlohmann::json> epoch_records(const std::string& path) {
    std::vector<nlohmann::json> records;
    for (const std::string& line : lines_of(path)) {
        nlohmann::json r = nlohmann::json::parse(line);
        if (!r.contains("event")) records.push_back(std::move(r));
    }
    return records;
}

/// Every parameter and buffer of the model in a checkpoint, flattened.
std::vector<float> checkpoint_weights(const std::string& path) {
    facet::Checkpoint<float> c = facet::load_checkpoint<float>(path);
    std::vector<float> all;
    for (const auto& p : c.model.parameters())
        all.insert(all.end(), p.value->begin(), p.value->end());
    for (const auto& [name, t] : c.model.buffers()) all.insert(all.end(), t->begin(), t->end());
    return all;
}

/// Every parameter of `model` (no buffers), flattened; `model` may be a temporary.
template <typename Model>
std::vector<float> parameter_values(Model&& model) {
    std::vector<float> all;
    for (const auto& p : model.parameters())
        all.insert(all.end(), p.value->begin(), p.value->end());
    return all;
}

int run_cli(fer::Cli cli, int (*body)(const fer::Cli&), std::vector<std::string> args) {
    return facet_test::run_fer_command(std::move(cli), body, std::move(args)).status;
}

}  // namespace

TEST_CASE("fer train writes the best model, the checkpoint and one log line per epoch") {
    const facet::DataSplits data = small_synthetic();
    const std::string out = scratch("train");
    REQUIRE(fer::train_on(small_config(out), data) == 0);
    CHECK(fs::exists(out + "/model.facet"));
    CHECK(fs::exists(out + "/checkpoint.facet"));
    const auto log = epoch_records(out + "/log.jsonl");
    REQUIRE(log.size() == 2);
    for (const char* key : {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds",
                            "images_per_second"})
        CHECK_MESSAGE(log[1].contains(key), key);
    CHECK(log[0]["epoch"] == 1);
    CHECK(log[1]["epoch"] == 2);

    // The saved model carries what inference needs and predicts what the evaluation saw.
    fer::TrainedModel t = fer::load_trained(out + "/model.facet");
    CHECK(t.norm.stddev > 0);
    CHECK(t.classes.size() == 7);
    const facet::Dataset& test = *data.find("synthetic-test");
    const fer::Evaluation a = fer::evaluate(t.model, test, t.norm, 7);
    const fer::Evaluation b =
        fer::evaluate(t.model, test, t.norm, 64);  // batch size must not matter
    REQUIRE(a.probabilities.size() == test.size() * 7);
    for (std::size_t i = 0; i < test.size(); ++i) {
        double sum = 0;
        for (int c = 0; c < 7; ++c) sum += a.probability(i, c);
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
    for (std::size_t k = 0; k < a.probabilities.size(); ++k)
        CHECK(a.probabilities[k] == doctest::Approx(b.probabilities[k]).epsilon(1e-5));
}

TEST_CASE(
    "an interrupted run resumed from its checkpoint ends with the uninterrupted run's weights") {
    const facet::DataSplits data = small_synthetic();
    const std::string straight = scratch("straight"), interrupted = scratch("interrupted");
    REQUIRE(fer::train_on(small_config(straight), data) == 0);

    fer::TrainConfig c = small_config(interrupted);
    c.max_steps = 4;  // 77 images (84 less 7 held out) / 16 = 5 steps per epoch: mid epoch 1
    std::ostringstream captured;
    auto* old = std::cout.rdbuf(captured.rdbuf());
    const int status = fer::train_on(c, data);
    std::cout.rdbuf(old);
    REQUIRE(status == 0);
    CHECK(epoch_records(interrupted + "/log.jsonl").empty());
    // No validation has run, so there is no best model and no accuracy to report.
    CHECK_FALSE(std::filesystem::exists(interrupted + "/model.facet"));
    CHECK(captured.str().find("no epoch completed") != std::string::npos);
    CHECK(captured.str().find("best validation accuracy") == std::string::npos);
    c.max_steps = 9;  // and again in the middle of epoch 2
    c.resume = true;
    REQUIRE(fer::train_on(c, data) == 0);
    CHECK(epoch_records(interrupted + "/log.jsonl").size() == 1);
    c.max_steps = 0;
    REQUIRE(fer::train_on(c, data) == 0);

    const std::vector<float> a = checkpoint_weights(straight + "/checkpoint.facet");
    const std::vector<float> b = checkpoint_weights(interrupted + "/checkpoint.facet");
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(epoch_records(interrupted + "/log.jsonl").size() == 2);
}

TEST_CASE("a saved model carries the training normalisation to the last bit") {
    const facet::DataSplits data = small_synthetic();
    const fer::TrainConfig config = small_config(scratch("normalisation"));
    facet::Normalization norm;
    norm.mean = 0.50784313f, norm.stddev = 0.2551937f;  // need 8-9 digits to survive a round trip
    const std::string path = config.out + "/model.facet";
    facet::Sequential<float> model = fer::build_model("fer-cnn-s", 1);
    facet::save(model, path, fer::model_metadata(config, norm, *data.training(), 0.5, 1));
    const fer::TrainedModel loaded = fer::load_trained(path);
    CHECK(loaded.norm.mean == norm.mean);
    CHECK(loaded.norm.stddev == norm.stddev);
}

TEST_CASE("fer train records the model's provenance: command, data fingerprint, validation") {
    const std::string out = scratch("provenance");
    const char* argv[] = {"fer", "train", "--out", out.c_str(), "--epochs", "1", "--resume"};
    fer::Cli cli = fer::train_cli();
    REQUIRE(cli.parse(7, const_cast<char**>(argv), 2));
    fer::TrainConfig c = small_config(out);
    c.command_line = fer::train_config(cli).command_line;
    CHECK(c.command_line == "fer train --epochs 1");  // neither where the files go nor --resume
    REQUIRE(fer::train_on(c, small_synthetic()) == 0);
    const facet::ModelFile<float> file = facet::load_model_file<float>(out + "/model.facet");
    const facet::Provenance& p = file.provenance;
    CHECK(p.command_line == c.command_line);
    CHECK(p.library_version == facet::version_string);
    CHECK(p.data_fingerprint.rfind("crc32 ", 0) == 0);
    CHECK(p.data_fingerprint.find("images of 48x48") != std::string::npos);
    CHECK(p.metric("epoch") >= 1);
    CHECK(p.metric("val_accuracy", -1) ==
          doctest::Approx(std::stod(file.note("val_accuracy"))).epsilon(1e-5));
    CHECK(p.note("model") == "fer-cnn-s");
    // The commit the program was built from, when it was built from a git checkout.
    std::string head;
    if (FILE* git = ::popen("git -C " FACET_SOURCE_DIR " rev-parse HEAD 2>/dev/null", "r")) {
        char line[128] = {};
        if (std::fgets(line, sizeof line, git)) head = std::string(line, 40);
        ::pclose(git);
    }
    const bool git_checkout =
        head.size() == 40 && head.find_first_not_of("0123456789abcdef") == std::string::npos;
#ifdef FER_HAS_SOURCE_REVISION  // built with fer's revision step (not in the sanitizer passes)
    if (git_checkout) {
        CHECK(fer::source_revision().rfind(head, 0) == 0);
        CHECK(p.note("git_commit") == fer::source_revision());
    } else {
        MESSAGE("not a git checkout: no commit to record");
        CHECK(p.note("git_commit").empty());
    }
#else
    (void)git_checkout;
    MESSAGE("built without fer's revision step: no commit to record");
    CHECK(p.note("git_commit").empty());
#endif
    // The test split, reported once after training, is recorded too (never used to choose).
    CHECK(p.metric("test.accuracy_best_epoch", -1) ==
          doctest::Approx(std::stod(file.note("test.accuracy_best_epoch"))).epsilon(1e-9));
}

TEST_CASE("fer eval --json prints one object with accuracy, per_class and confusion") {
    const std::string out = scratch("eval_json");
    auto c = small_config(out);
    c.epochs = 1;
    REQUIRE(fer::train_on(c, small_synthetic()) == 0);
    const auto run =
        facet_test::run_fer_command(fer::eval_cli(), fer::run_eval,
                                    {"--model", out + "/model.facet", "--json", "--threads", "2"});
    REQUIRE(run.status == 0);
    const nlohmann::json json = nlohmann::json::parse(run.output);  // one object, nothing else
    REQUIRE(json.is_object());
    for (const char* key : {"accuracy", "per_class", "confusion", "split", "samples", "loss"})
        CHECK_MESSAGE(json.contains(key), key);
    CHECK(json.at("split") == "synthetic-test");
    CHECK(json.at("per_class").size() == 7);
    CHECK(json.at("classes").at(3) == "happy");
    // Seven rows of seven counts that add up to the evaluated samples (the synthetic test split),
    // and the accuracy is their diagonal's share.
    const std::size_t samples = fer::make_synthetic_faces().at("synthetic-test").size();
    std::size_t total = 0, diagonal = 0;
    REQUIRE(json.at("confusion").size() == 7);
    for (std::size_t t = 0; t < 7; ++t) {
        REQUIRE(json.at("confusion").at(t).size() == 7);
        for (std::size_t p = 0; p < 7; ++p) {
            const auto n = json.at("confusion").at(t).at(p).get<std::size_t>();
            total += n;
            diagonal += t == p ? n : 0;
        }
    }
    CHECK(total == samples);
    CHECK(json.at("samples").get<std::size_t>() == samples);
    CHECK(json.at("accuracy").get<double>() ==
          static_cast<double>(diagonal) / static_cast<double>(samples));
}

TEST_CASE("fer eval --split val on image folders is the hold-out the model's fer train took") {
    const std::string out = scratch("eval_own_val");
    auto c = small_config(out);
    c.epochs = 1;
    const facet::DataSplits faces = small_synthetic();
    REQUIRE(fer::train_on(c, faces) == 0);
    // The same faces as an image folder: train/<emotion>/<i>.png and test/<emotion>/<i>.png.
    const fs::path folder = fs::path(scratch("eval_own_val_data"));
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"synthetic-train", "train"},
                                   {"synthetic-test", "test"}}) {
        const facet::Dataset& d = faces.at(from);
        for (std::size_t i = 0; i < d.size(); ++i) {
            const fs::path dir = folder / to / d.class_names[d.labels[i]];
            fs::create_directories(dir);
            facet::write_png(dir / (std::to_string(1000 + i) + ".png"), d.image(i), d.width,
                             d.height);
        }
    }
    const auto run =
        facet_test::run_fer_command(fer::eval_cli(), fer::run_eval,
                                    {"--model", out + "/model.facet", "--data", folder.string(),
                                     "--split", "val", "--json", "--threads", "1"});
    REQUIRE(run.status == 0);
    const nlohmann::json json = nlohmann::json::parse(run.output);
    CHECK(json.at("split") == "val (held out of train)");
    // As many faces as fer train held out, by the fraction and seed it recorded.
    const facet::ModelFile<float> file = facet::load_model_file<float>(out + "/model.facet");
    const facet::Dataset train = facet::read_image_folder(folder).at("train");
    const std::size_t held_out =
        facet::stratified_split(train, std::stod(file.note("validation.fraction")),
                                std::stoull(file.note("validation.seed")), "v")
            .held_out.size();
    CHECK(held_out > 0);
    CHECK(json.at("samples").get<std::size_t>() == held_out);
    CHECK(json.at("samples").get<std::size_t>() < train.size());
    // A split that is not there is still an error naming it.
    CHECK_THROWS_WITH(facet_test::run_fer_command(fer::eval_cli(), fer::run_eval,
                                                  {"--model", out + "/model.facet", "--data",
                                                   folder.string(), "--split", "nope"}),
                      doctest::Contains("nope"));
}

TEST_CASE("fer report reads the training log as JSON lines: numbers, null as NaN, bad lines") {
    const std::string dir = scratch("log_lines");
    const std::string log = dir + "/log.jsonl";
    std::ofstream(log)
        << "{\"epoch\": 1, \"val_acc\": 0.25, \"lr\": 1e-3, \"note\": \"a, \\\"b\\\": 2\"}\n"
           "\n"
           "{\"val_acc\": null, \"epoch\": 2, \"train_loss\": -1.5E+2}\n";
    const auto rows = fer::detail::read_json_lines(log);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].at("epoch") == 1);
    CHECK(rows[0].at("val_acc") == 0.25);
    CHECK(rows[0].at("lr") == 1e-3);
    CHECK(rows[0].count("note") == 0);  // a string, even one that looks like a key, is no number
    CHECK(rows[0].count("b") == 0);
    CHECK(std::isnan(rows[1].at("val_acc")));
    CHECK(rows[1].at("train_loss") == -150);
    std::ofstream(log, std::ios::app) << "{\"epoch\": 3, \"val_acc\": 0.5\n";
    CHECK_THROWS_WITH_AS(fer::detail::read_json_lines(log),
                         doctest::Contains("log.jsonl:4: not a JSON object"), facet::Error);
    std::ofstream(log) << "{\"val_acc\": 0.5}\n";
    CHECK_THROWS_WITH_AS(fer::detail::read_json_lines(log),
                         doctest::Contains("log.jsonl:1: no \"epoch\" field"), facet::Error);
}

TEST_CASE("fer report writes one well-formed self-contained page") {
    const std::string out = scratch("report");
    REQUIRE(fer::train_on(small_config(out), small_synthetic()) == 0);
    REQUIRE(run_cli(fer::report_cli(), fer::run_report, {"--run", out, "--threads", "2"}) == 0);
    std::ifstream in(out + "/report.html");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string html = ss.str();
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(html.find("</html>") != std::string::npos);
    auto count = [&](const std::string& needle) {
        std::size_t n = 0;
        for (std::size_t p = html.find(needle); p != std::string::npos;
             p = html.find(needle, p + 1))
            ++n;
        return n;
    };
    CHECK(count("<svg") == count("</svg>"));
    CHECK(count("<svg") >= 5);                         // 2 distributions, 2 curves, confusion, F1
    CHECK(count("data:image/png;base64,") >= 32 + 7);  // first-layer filters and sample faces
    CHECK(html.find("synthetic") != std::string::npos);
    // Self-contained: nothing is fetched (the only URLs are SVG's namespace name).
    CHECK(html.find("src='http") == std::string::npos);
    CHECK(html.find("src=\"http") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    for (const char* section :
         {"Data", "Training", "Results on", "misclassified", "Inside the network"})
        CHECK_MESSAGE(html.find(section) != std::string::npos, section);
}

TEST_CASE("bad input: missing model, corrupt image, unknown option, bad values") {
    CHECK_THROWS_WITH_AS(fer::load_trained("/nonexistent/model.facet"),
                         doctest::Contains("/nonexistent/model.facet"), facet::Error);
    const std::string dir = scratch("bad");
    const std::string junk = dir + "/junk.jpg";
    std::ofstream(junk) << "this is not an image";
    const std::string out = scratch("bad_model");
    REQUIRE(fer::train_on(
                [&] {
                    auto c = small_config(out);
                    c.epochs = 1;
                    return c;
                }(),
                small_synthetic()) == 0);
    CHECK_THROWS_WITH_AS(
        run_cli(fer::predict_cli(), fer::run_predict, {"--model", out + "/model.facet", junk}),
        doctest::Contains("junk.jpg"), facet::Error);
    fer::Cli cli = fer::train_cli();
    std::vector<std::string> args = {"fer", "train", "--epochs", "many"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    REQUIRE(cli.parse(4, argv.data(), 2));
    CHECK_THROWS_WITH_AS(fer::train_config(cli), doctest::Contains("--epochs"), facet::Error);
    fer::Cli cli2 = fer::train_cli();
    args = {"fer", "train", "--no-such-flag"};
    argv.clear();
    for (auto& a : args) argv.push_back(a.data());
    CHECK_THROWS_WITH_AS(cli2.parse(3, argv.data(), 2), doctest::Contains("--no-such-flag"),
                         facet::Error);
}

TEST_CASE("a short run on real FER-2013 images" * doctest::test_suite("fer2013")) {
    const fs::path root = facet_test::fer2013_dir();
    if (root.empty()) {
        MESSAGE(facet_test::fer2013_missing);
        return;
    }
    facet::ReadOptions read;
    read.max_per_class = 16;
    const facet::DataSplits data = fer::load_fer_data(root, read);
    REQUIRE(data.training() != nullptr);
    CHECK(data.training()->size() == 7 * 16);
    const std::string out = scratch("real");
    auto c = small_config(out);
    c.epochs = 1;
    c.data = {root.string()};
    REQUIRE(fer::train_on(c, data) == 0);
    fer::TrainedModel t = fer::load_trained(out + "/model.facet");
    const fer::Evaluation ev = fer::evaluate(t.model, data.at("test"), t.norm);
    CHECK(ev.predicted.size() == data.at("test").size());
    CHECK(std::isfinite(ev.loss));
}

namespace {

std::string bytes_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// Sets every pixel of the batch to NaN when `step` is one of `bad_steps`.
std::function<void(std::uint64_t, facet::Batch&)> poison_steps(
    std::vector<std::uint64_t> bad_steps) {
    return [bad_steps](std::uint64_t step, facet::Batch& batch) {
        if (std::find(bad_steps.begin(), bad_steps.end(), step) != bad_steps.end())
            batch.images.fill(std::nanf(""));
    };
}

}  // namespace

TEST_CASE(
    "a diverging run stops naming the step and the layer; model and checkpoint keep their bytes") {
    const facet::DataSplits data = small_synthetic();
    const std::string out = scratch("diverge");
    auto c = small_config(out);
    c.epochs = 1;
    REQUIRE(fer::train_on(c, data) == 0);  // a good run leaves a best model and a checkpoint
    const std::string model_before = bytes_of(out + "/model.facet");
    const std::string checkpoint_before = bytes_of(out + "/checkpoint.facet");

    // A fresh run into the same folder with an absurd learning rate: had it reached the end of
    // its epoch, it would have replaced both files (a fresh run saves its first epoch's model).
    c.optimizer = "sgd", c.lr = 1e6, c.schedule = "constant", c.batch = 4;  // 20 steps per epoch
    std::string message;
    std::uint64_t step = 0;
    try {
        fer::train_on(c, data);
    } catch (const facet::NonFiniteError& e) {
        message = e.what();
        step = e.step().value_or(0);
    }
    INFO(message);
    CHECK(message.rfind("non-finite ", 0) == 0);
    CHECK(step >= 2);
    CHECK(step <= 20);
    CHECK(message.find("at step " + std::to_string(step) + ": ") != std::string::npos);
    CHECK(message.find(": layer ") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    CHECK(bytes_of(out + "/model.facet") == model_before);
    CHECK(bytes_of(out + "/checkpoint.facet") == checkpoint_before);
}

TEST_CASE("--on-nonfinite skip: bad steps change nothing, are counted, and the run goes on") {
    const facet::DataSplits data = small_synthetic();
    const std::string out = scratch("skip");
    auto c = small_config(out);  // 5 steps per epoch
    c.on_nonfinite = "skip";
    c.before_step = poison_steps({3, 4, 8});
    REQUIRE(fer::train_on(c, data) == 0);
    const auto log = epoch_records(out + "/log.jsonl");
    REQUIRE(log.size() == 2);
    CHECK(log[0]["skipped_steps"] == 2);
    CHECK(log[1]["skipped_steps"] == 1);
    CHECK(log[1]["train_loss"].is_number());
    // Loading checks that every stored value is finite.
    const facet::Checkpoint<float> ck = facet::load_checkpoint<float>(out + "/checkpoint.facet");
    CHECK(ck.info.step == 10);
    CHECK(ck.info.note("skipped_steps") == "3");

    // Too many bad steps in a row: gives up, naming the last one; the files are not touched.
    const std::string model_before = bytes_of(out + "/model.facet");
    const std::string checkpoint_before = bytes_of(out + "/checkpoint.facet");
    c.max_consecutive_skips = 3;
    c.before_step = poison_steps({2, 3, 4, 5});
    std::string message;
    try {
        fer::train_on(c, data);
    } catch (const facet::Error& e) {
        message = e.what();
    }
    CHECK(message.find("gave up after 3 skipped steps in a row") != std::string::npos);
    CHECK(message.find("at step 4: ") != std::string::npos);
    CHECK(bytes_of(out + "/model.facet") == model_before);
    CHECK(bytes_of(out + "/checkpoint.facet") == checkpoint_before);
}

TEST_CASE("--on-nonfinite stop (the default) ends at the first bad step, naming it and the input") {
    const std::string out = scratch("skip_stop");
    auto c = small_config(out);
    c.before_step = poison_steps({3});
    try {
        fer::train_on(c, small_synthetic());
        FAIL("no error");
    } catch (const facet::NonFiniteError& e) {
        CHECK(e.step() == std::uint64_t{3});
        CHECK(e.input_not_finite());
    }
    CHECK(!fs::exists(out + "/model.facet"));
}

TEST_CASE("same seed, same threads, same data: identical model and checkpoint bytes") {
    const facet::DataSplits data = small_synthetic();
    const std::string a = scratch("det_a"), b = scratch("det_b"), other = scratch("det_other");
    auto one_epoch = [](const std::string& out) {
        auto c = small_config(out);  // 2 threads: the threaded GEMM and parallel loops take part
        c.epochs = 1;
        return c;
    };
    REQUIRE(fer::train_on(one_epoch(a), data) == 0);
    REQUIRE(fer::train_on(one_epoch(b), data) == 0);
    CHECK(bytes_of(a + "/model.facet") == bytes_of(b + "/model.facet"));
    CHECK(bytes_of(a + "/checkpoint.facet") == bytes_of(b + "/checkpoint.facet"));
    auto c = one_epoch(other);
    c.seed = 6;  // the comparison can fail: another seed gives other bytes
    REQUIRE(fer::train_on(c, data) == 0);
    CHECK(bytes_of(a + "/model.facet") != bytes_of(other + "/model.facet"));
}

TEST_CASE("SIGINT stops after the current step with a checkpoint that resumes exactly") {
    const facet::DataSplits data = small_synthetic();
    const std::string straight = scratch("sigint_straight"), stopped = scratch("sigint");
    auto c = small_config(straight);
    c.epochs = 1;  // 5 steps
    REQUIRE(fer::train_on(c, data) == 0);
    const auto before = std::signal(SIGINT, SIG_DFL);  // whatever the test runner installed
    std::signal(SIGINT, before);
    c.out = stopped;
    c.before_step = [](std::uint64_t step, facet::Batch&) {
        if (step == 3) std::raise(SIGINT);  // as a Ctrl-C in the middle of step 3
    };
    CHECK(fer::train_on(c, data) == 128 + SIGINT);
    facet::Checkpoint<float> ck = facet::load_checkpoint<float>(stopped + "/checkpoint.facet");
    CHECK(ck.info.step == 3);
    CHECK(ck.info.epoch == 0);
    CHECK(!fs::exists(stopped + "/model.facet"));
    c.before_step = nullptr;
    c.resume = true;
    REQUIRE(fer::train_on(c, data) == 0);
    CHECK(bytes_of(stopped + "/model.facet") == bytes_of(straight + "/model.facet"));
    CHECK(bytes_of(stopped + "/checkpoint.facet") == bytes_of(straight + "/checkpoint.facet"));
    // The handler train_on installed is gone again.
    const auto now = std::signal(SIGINT, SIG_DFL);
    std::signal(SIGINT, now);
    CHECK((now == before));  // (a function pointer doctest cannot print)
}

TEST_CASE("a second SIGINT ends the program at once, without waiting for the step and the save") {
    // The first SIGINT (or SIGTERM) only asks training to stop after its step (see above); its
    // handler gives the signal back its default action, so that a user who does not want to wait
    // can press Ctrl-C again. In a child process, with the handlers train_on installs: the first
    // raise must leave the process running with the request set, the second must end it by
    // SIGINT. (Only async-signal-safe calls in the child: it was forked from a threaded process.)
    for (int signal : {SIGINT, SIGTERM}) {
        CAPTURE(signal);
        const pid_t child = fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            facet::StopSignals handlers;
            std::raise(signal);  // the first: a request
            if (!facet::StopSignals::requested()) _exit(2);
            std::raise(signal);  // the second: the default action ends the process here
            _exit(3);
        }
        int status = 0;
        REQUIRE(waitpid(child, &status, 0) == child);
        CHECK(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == signal);
    }
}

TEST_CASE("fer train refuses bad --on-nonfinite and --max-consecutive-skips values") {
    for (const std::vector<std::string>& bad :
         {std::vector<std::string>{"--on-nonfinite", "ignore"},
          std::vector<std::string>{"--max-consecutive-skips", "0"},
          std::vector<std::string>{"--clip", "-1"}}) {
        fer::Cli cli = fer::train_cli();
        std::vector<std::string> args = {"fer", "train", bad[0], bad[1]};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        REQUIRE(cli.parse(4, argv.data(), 2));
        CHECK_THROWS_WITH_AS(fer::train_config(cli), doctest::Contains(bad[0].c_str()),
                             facet::Error);
    }
}

TEST_CASE(
    "fer train --classes trains another classifier on class folders, and the file names them") {
    // Bright squares with a dark centre ("face") against flat gray ones ("background"); noise
    // makes each picture its own.
    const fs::path folder = fs::path(scratch("classes_data"));
    facet::Rng rng(7);
    for (const char* split : {"train", "test"})
        for (int label = 0; label < 2; ++label) {
            const fs::path dir = folder / split / (label == 0 ? "face" : "background");
            fs::create_directories(dir);
            for (int i = 0; i < (std::string(split) == "train" ? 30 : 6); ++i) {
                std::vector<std::uint8_t> px(48 * 48);
                for (std::size_t k = 0; k < px.size(); ++k) {
                    const int x = int(k % 48), y = int(k / 48);
                    const bool centre = std::abs(x - 24) < 10 && std::abs(y - 24) < 10;
                    const double base = label == 0 ? (centre ? 40 : 200) : 120;
                    px[k] = std::uint8_t(std::clamp(base + 30 * (rng.uniform() - 0.5), 0.0, 255.0));
                }
                facet::write_png(dir / (std::to_string(i) + ".png"), px.data(), 48, 48);
            }
        }
    const std::string out = scratch("classes_model");
    fer::Cli cli = fer::train_cli();
    std::vector<std::string> args = {"fer",       "train",
                                     "--data",    folder.string(),
                                     "--classes", "face, background",
                                     "--out",     out,
                                     "--epochs",  "6",
                                     "--batch",   "8",
                                     "--model",   "fer-resnet-s",
                                     "--threads", "1"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    REQUIRE(cli.parse(static_cast<int>(argv.size()), argv.data(), 2));
    const fer::TrainConfig c = fer::train_config(cli);
    CHECK(c.classes == std::vector<std::string>{"face", "background"});
    std::ostringstream quiet;
    auto* old = std::cout.rdbuf(quiet.rdbuf());
    const int status = fer::run_train(c);
    std::cout.rdbuf(old);
    REQUIRE(status == 0);
    fer::TrainedModel t = fer::load_trained(out + "/model.facet");
    CHECK(t.classes == std::vector<std::string>{"face", "background"});
    CHECK(t.model.output_shape()[0] == 2);
    // Two classes this different are learnt in six short epochs: every test picture right.
    facet::ReadOptions read;
    read.class_names = {"face", "background"};
    const facet::Dataset test = facet::read_image_folder(folder, read).at("test");
    facet::Tensor<float> x(facet::Shape{test.size(), 1, 48, 48});
    t.norm.apply(test.pixels.data(), x.data(), test.pixels.size());
    const facet::Tensor<float>& p = t.model.predict(x);
    std::size_t right = 0;
    for (std::size_t i = 0; i < test.size(); ++i)
        right += (p.data()[2 * i] > p.data()[2 * i + 1] ? 0 : 1) == test.labels[i];
    CHECK(right == test.size());

    // Refusals: one class, a class named twice, a blank name, and --classes without a folder.
    for (const char* bad : {"face", "face,Face", "face,,background"}) {
        fer::Cli again = fer::train_cli();
        std::vector<std::string> a2 = {"fer", "train", "--classes", bad};
        std::vector<char*> v2;
        for (auto& s : a2) v2.push_back(s.data());
        REQUIRE(again.parse(4, v2.data(), 2));
        CHECK_THROWS_AS(fer::train_config(again), facet::Error);
    }
    fer::TrainConfig synthetic = small_config(scratch("classes_synthetic"));
    synthetic.classes = {"face", "background"};
    CHECK_THROWS_WITH_AS(fer::run_train(synthetic), doctest::Contains("--classes needs --data"),
                         facet::Error);
}

TEST_CASE("fer train --init starts from a model's weights; --average-from writes their mean") {
    const facet::DataSplits data = small_synthetic();
    const std::string first = scratch("init_first");
    REQUIRE(fer::train_on(small_config(first), data) == 0);
    const std::vector<float> start =
        parameter_values(fer::load_trained(first + "/model.facet").model);
    std::ostringstream quiet;
    auto* old = std::cout.rdbuf(quiet.rdbuf());
    struct Restore {
        std::streambuf* old;
        ~Restore() { std::cout.rdbuf(old); }
    } restore{old};

    SUBCASE("--init: at a learning rate of 1e-12 the parameters stay the model's") {
        const std::string out = scratch("init_still");
        fer::TrainConfig c = small_config(out);
        c.init = first + "/model.facet";
        c.epochs = 1;
        c.schedule = "constant";
        c.lr = 1e-12;
        REQUIRE(fer::train_on(c, data) == 0);
        const std::vector<float> after =
            parameter_values(facet::load_checkpoint<float>(out + "/checkpoint.facet").model);
        REQUIRE(after.size() == start.size());
        double worst = 0;
        for (std::size_t i = 0; i < start.size(); ++i)
            worst = std::max(worst, double(std::abs(after[i] - start[i])));
        CHECK(worst < 1e-6);
        // Without --init the same run starts elsewhere: the check above can fail.
        c.init.clear();
        c.out = scratch("init_fresh");
        REQUIRE(fer::train_on(c, data) == 0);
        const std::vector<float> fresh =
            parameter_values(facet::load_checkpoint<float>(c.out + "/checkpoint.facet").model);
        double moved = 0;
        for (std::size_t i = 0; i < start.size(); ++i)
            moved = std::max(moved, double(std::abs(fresh[i] - start[i])));
        CHECK(moved > 1e-3);
    }

    SUBCASE("--average-from: the mean of the later epochs, validated, competes for model.facet") {
        const std::string out = scratch("average");
        fer::TrainConfig c = small_config(out);
        c.init = first + "/model.facet";
        c.epochs = 3;
        c.average_from = 2;
        c.schedule = "constant";
        c.lr = 5e-4;
        REQUIRE(fer::train_on(c, data) == 0);
        REQUIRE(fs::exists(out + "/average.facet"));
        fer::TrainedModel average = fer::load_trained(out + "/average.facet");
        CHECK(average.note("average.epochs") == "2 to 3");
        // The accuracy written is the saved weights' and statistics' own on the validation split.
        const fer::DataPlan plan = fer::plan_data(c, data);
        facet::DatasetBatches val(plan.val, average.norm, c.batch);
        const facet::ValidationResult r = facet::evaluate_batches(average.model, val);
        CHECK(std::stod(average.note("val_accuracy")) == doctest::Approx(r.accuracy));
        // The log says whether it was chosen, and model.facet is then the average.
        nlohmann::json record;
        for (const std::string& line : lines_of(out + "/log.jsonl")) {
            nlohmann::json j = nlohmann::json::parse(line);
            if (j.value("event", "") == "average") record = j;
        }
        REQUIRE(record.is_object());
        CHECK(record["epochs"] == "2 to 3");
        CHECK(record["val_accuracy"].get<double>() == doctest::Approx(r.accuracy));
        double best_epoch_accuracy = 0;
        for (const nlohmann::json& e : epoch_records(out + "/log.jsonl"))
            best_epoch_accuracy = std::max(best_epoch_accuracy, e["val_acc"].get<double>());
        CHECK(record["chosen"].get<bool>() == (r.accuracy > best_epoch_accuracy));
        fer::TrainedModel chosen = fer::load_trained(out + "/model.facet");
        CHECK((chosen.note("average.epochs") == "2 to 3") == record["chosen"].get<bool>());
        // The mean differs from the last epoch's weights it was made from.
        const std::vector<float> mean = parameter_values(average.model);
        const std::vector<float> last =
            parameter_values(facet::load_checkpoint<float>(out + "/checkpoint.facet").model);
        REQUIRE(mean.size() == last.size());
        CHECK(mean != last);
    }

    SUBCASE("refusals name the option") {
        fer::TrainConfig c = small_config(scratch("init_refused"));
        c.init = first + "/model.facet";
        c.model = "fer-resnet-s";
        CHECK_THROWS_WITH_AS(fer::train_on(c, data), doctest::Contains("--init"), facet::Error);
        c = small_config(scratch("average_refused"));
        c.average_from = 3;  // after the 2 epochs
        CHECK_THROWS_WITH_AS(fer::train_on(c, data), doctest::Contains("--average-from"),
                             facet::Error);
        c.average_from = 1;
        c.resume = true;
        CHECK_THROWS_WITH_AS(fer::train_on(c, data), doctest::Contains("--average-from"),
                             facet::Error);
    }
}
