// fer/bench.hpp — `fer bench`: where a training step of the model spends its time, layer by layer
// (forward and backward, milliseconds, GFLOP/s and share of the step), for facet's GEMM and, when
// the build has Eigen, for Eigen's product through the same layers, side by side.
#pragma once

#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>

#include <sys/resource.h>
#include <facet/kernels/gemm.hpp>
#include <facet/kernels/system_summary.hpp>
#include <facet/loss/softmax_cross_entropy.hpp>
#include <facet/model/fold_batchnorm.hpp>
#include <facet/model/quantize.hpp>
#include <facet/model/serialize.hpp>
#include <facet/optim/adam.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "model_zoo.hpp"

namespace fer {

inline Cli bench_cli() {
    Cli cli("bench", "Times forward and backward of every layer of the model on random data.");
    cli.option("model", "NAME|FILE",
               "fer-cnn-s, fer-cnn-m, fer-cnn-mc or fer-resnet-s (random weights), or with "
               "--latency a model file written by fer train",
               "fer-cnn-s")
        .option("batch", "N", "batch size", "64")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("precision", "fp32|bf16",
                "bf16: the convolutions and dense layers multiply bf16-rounded operands and sum in "
                "fp32",
                "fp32")
        .option("bf16-kernel", "NAME",
                "with --precision bf16: the bf16 GEMM's kernel: auto (AMX tiles when they pass a "
                "check at first use, else AVX512-BF16, else portable), avx512-bf16, amx-bf16 or "
                "portable",
                "auto")
        .option("repeats", "N", "timed steps (after warm-up); the median is reported", "5")
        .flag("eval",
              "instead of the training table: predict()'s inference pass, one row per step of "
              "its plan (a conv or dense layer with the batch norm and ReLU it applies, eval "
              "dropout skipped); works at --batch 1")
        .option("winograd-tile", "M",
                "output tile of the Winograd convolutions: 4 for F(4x4, 3x3), 2 for "
                "F(2x2, 3x3)",
                "4")
        .flag("im2col",
              "compute the 3x3 stride-1 convolutions by im2col + GEMM, as every other one, "
              "instead of Winograd (for comparison)")
        .flag("throughput",
              "instead of the per-layer table: training-step images/s (forward + backward + "
              "AdamW), inference images/s at --batch, batch-1 latency, peak memory and the conv "
              "layers' forward + backward time, as JSON")
        .flag("latency",
              "instead of the per-layer table: batch-1 latency (median of --runs predictions "
              "after warm-up, the models taking turns) and file size of the model as it is "
              "(fp32), with its batch norms folded, and quantised to int8 (calibrated on random "
              "images: for timing and size only; fer quantize makes the int8 model to use)")
        .option("runs", "N", "timed predictions per model with --latency", "200")
        .flag("json",
              "with --latency: print one JSON object (fp32_ms, folded_ms, int8_ms, "
              "fp32_bytes, folded_bytes, int8_bytes, ...)");
    return cli;
}

/// "N threads, GEMM micro-kernel ISA, 3x3 convolutions by ALGORITHM": what the tables ran on.
inline std::string kernels_in_use() {
    return std::to_string(facet::num_threads()) + " threads, GEMM micro-kernel " +
           facet::gemm_isa_name(facet::gemm_isa()) + ", 3x3 convolutions by " +
           (!facet::winograd_enabled()    ? std::string("im2col")
            : facet::winograd_tile() == 4 ? std::string("Winograd F(4x4, 3x3)")
                                          : std::string("Winograd F(2x2, 3x3)"));
}

struct LayerTimes {
    std::vector<double> forward_ms, backward_ms;
};

/// Median per-layer times of `repeats` training steps (forward + backward) on random data.
inline LayerTimes time_layers(facet::Sequential<float>& model, std::size_t batch, int repeats) {
    using clock = std::chrono::steady_clock;
    const std::size_t L = model.layers().size();
    facet::Rng rng(3);
    std::vector<facet::Tensor<float>> acts(L), grads(L + 1);
    facet::Tensor<float> x(facet::batch_shape(batch, model.input_shape()));
    x.fill_normal(rng, 0, 1);
    std::vector<int> labels(batch);
    for (auto& l : labels) l = static_cast<int>(rng.below(7));
    facet::SoftmaxCrossEntropy<float> loss;
    model.set_mode(facet::Mode::Train);
    model.layer(0).set_input_gradient(false);  // as in a training step: nobody reads dL/dx
    std::vector<std::vector<double>> fwd(L), bwd(L);
    // A batch norm and the ReLU after it run as one, as Sequential runs them (fused_with_next);
    // the pair's time goes in the batch norm's row and the ReLU's row shows 0.
    auto bn = [&](std::size_t i) -> facet::BatchNorm<float>& {
        return static_cast<facet::BatchNorm<float>&>(model.layer(i));
    };
    for (int rep = 0; rep <= repeats; ++rep) {
        // Every parameter changes between training steps, and layers that keep something made
        // from their weights (Conv2d's Winograd filters) remake it: nudge one weight of each
        // tensor, outside the timed region, so that the table counts that work as a step does.
        for (auto& p : model.parameters())
            if (p.value->size() > 0) (*p.value)[0] = std::nextafter((*p.value)[0], 1e30f);
        const facet::Tensor<float>* in = &x;
        for (std::size_t i = 0; i < L; ++i) {
            const bool pair = model.fused_with_next(i);
            const auto t0 = clock::now();
            if (pair)
                bn(i).forward_relu(*in, acts[i + 1]);
            else
                model.layer(i).forward(*in, acts[i]);
            if (rep) fwd[i].push_back(seconds_since(t0) * 1e3);
            if (pair && rep) fwd[i + 1].push_back(0);
            in = &acts[pair ? ++i : i];
        }
        loss.forward(acts[L - 1], labels);
        loss.backward(grads[L]);
        for (std::size_t i = L; i-- > 0;) {
            const bool pair = i > 0 && model.fused_with_next(i - 1);
            if (pair && rep) bwd[i].push_back(0);
            if (pair) --i;
            const auto t0 = clock::now();
            const facet::Tensor<float>& xi = i ? acts[i - 1] : x;
            if (pair)
                bn(i).backward_relu(xi, grads[i + 2], grads[i]);
            else
                model.layer(i).backward(xi, acts[i], grads[i + 1], grads[i]);
            if (rep) bwd[i].push_back(seconds_since(t0) * 1e3);
        }
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.empty() ? 0.0 : v[v.size() / 2];
    };
    LayerTimes t;
    for (std::size_t i = 0; i < L; ++i)
        t.forward_ms.push_back(median(fwd[i])), t.backward_ms.push_back(median(bwd[i]));
    return t;
}

/// Median time of each step of predict()'s inference plan, `repeats` passes after one warm-up.
inline std::vector<double> time_inference_steps(facet::Sequential<float>& model, std::size_t batch,
                                                int repeats) {
    using clock = std::chrono::steady_clock;
    facet::Rng rng(3);
    facet::Tensor<float> x(facet::batch_shape(batch, model.input_shape()));
    x.fill_normal(rng, 0, 1);
    const auto plan = model.inference_plan();
    std::vector<facet::Tensor<float>> outs(plan.size());
    std::vector<std::vector<double>> ms(plan.size());
    model.set_mode(facet::Mode::Eval);
    for (int rep = 0; rep <= repeats; ++rep) {
        const facet::Tensor<float>* in = &x;
        for (std::size_t s = 0; s < plan.size(); ++s) {
            const auto t0 = clock::now();
            in = &model.run_inference_step(plan[s], *in, outs[s]);
            if (rep) ms[s].push_back(seconds_since(t0) * 1e3);
        }
    }
    model.set_mode(facet::Mode::Train);
    std::vector<double> median;
    for (auto& v : ms) {
        std::sort(v.begin(), v.end());
        median.push_back(v[v.size() / 2]);
    }
    return median;
}

/// `fer bench --eval`: the inference table.
inline int run_eval_table(facet::Sequential<float>& model, const std::string& name,
                          std::size_t batch, int repeats) {
    std::vector<std::pair<std::string, std::vector<double>>> runs;
    runs.emplace_back("facet", time_inference_steps(model, batch, repeats));
#if defined(FACET_HAVE_EIGEN)
    facet::set_gemm_backend(facet::GemmBackend::Eigen);
    runs.emplace_back("eigen", time_inference_steps(model, batch, repeats));
    facet::set_gemm_backend(facet::GemmBackend::Facet);
#endif
    model.set_fusion(false);  // the same pass layer by layer, for comparison
    const std::vector<double> unfused = time_inference_steps(model, batch, repeats);
    model.set_fusion(true);
    const auto plan = model.inference_plan();
    std::printf("fer bench --eval: %s, batch %zu, %s; median of %d passes\n", name.c_str(), batch,
                kernels_in_use().c_str(), repeats);
    std::printf("%-7s %-44s %9s", "layers", "step", "MFLOP/img");
    for (const auto& [backend, _] : runs) std::printf(" | %6s ms  GFLOP/s  share", backend.c_str());
    std::printf("\n");
    std::vector<double> totals;
    for (const auto& [_, ms] : runs) totals.push_back(std::accumulate(ms.begin(), ms.end(), 0.0));
    double total_flops = 0;
    for (std::size_t s = 0; s < plan.size(); ++s) {
        double f = 0;
        std::string what;
        for (std::size_t i = plan[s].first; i < plan[s].first + plan[s].count; ++i) {
            f += static_cast<double>(
                model.layer(i).flops(i == 0 ? model.input_shape() : model.output_shape(i - 1)));
            what += (what.empty() ? "" : " + ") + model.layer(i).type();
        }
        if (plan[s].kind == facet::Sequential<float>::InferenceStep::Kind::Identity)
            what += " (skipped: the identity)";
        else if (plan[s].first < model.size() && model.layer(plan[s].first).type() != "ReLU")
            what = model.layer(plan[s].first).describe().substr(0, 24) +
                   (plan[s].count > 1 ? what.substr(what.find(' ')) : "");
        total_flops += f;
        const std::string range = plan[s].count == 1
                                      ? std::to_string(plan[s].first)
                                      : std::to_string(plan[s].first) + "-" +
                                            std::to_string(plan[s].first + plan[s].count - 1);
        std::printf("%-7s %-44.44s %9.2f", range.c_str(), what.c_str(), f / 1e6);
        const bool skipped =
            plan[s].kind == facet::Sequential<float>::InferenceStep::Kind::Identity;
        for (std::size_t r = 0; r < runs.size(); ++r) {
            const double ms = runs[r].second[s];
            if (skipped)
                std::printf(" | %9.3f %8s %5.1f%%", ms, "-", 100 * ms / totals[r]);
            else
                std::printf(" | %9.3f %8.1f %5.1f%%", ms,
                            ms > 0 ? f * static_cast<double>(batch) / (ms * 1e6) : 0.0,
                            100 * ms / totals[r]);
        }
        std::printf("\n");
    }
    std::printf("%-52s %9.2f", "total", total_flops / 1e6);
    for (double t : totals)
        std::printf(" | %9.3f ms %6.0f img/s", t, 1e3 * static_cast<double>(batch) / t);
    const double plain = std::accumulate(unfused.begin(), unfused.end(), 0.0);
    std::printf("\nlayer by layer (set_fusion(false)), facet: %.3f ms, %.0f img/s\n", plain,
                1e3 * static_cast<double>(batch) / plain);
    return 0;
}

/// Median time of forward + backward (data and weights) of every Conv2d of the model, each on a
/// random input of its own at batch `batch`: what facet_bench's BM_ConvStack and the oneDNN figure
/// of docs/benchmarks.md count, so that compare_pytorch.py can put PyTorch's convolutions beside
/// it.
inline double conv_stack_seconds(facet::Sequential<float>& model, std::size_t batch, int repeats) {
    struct Conv {
        facet::Layer<float>* layer;
        facet::Tensor<float> x, y, dy, dx;
    };
    facet::Rng rng(5);
    std::vector<Conv> convs;
    facet::Shape shape = model.input_shape();
    for (std::size_t i = 0; i < model.layers().size(); ++i) {
        facet::Layer<float>& l = model.layer(i);
        const facet::Shape out = l.output_shape(shape);
        if (l.type() == "Conv2d") {
            Conv c{&l,
                   facet::Tensor<float>(facet::batch_shape(batch, shape)),
                   {},
                   facet::Tensor<float>(facet::batch_shape(batch, out)),
                   {}};
            c.x.fill_normal(rng, 0, 1);
            c.dy.fill_normal(rng, 0, 1);
            convs.push_back(std::move(c));
        }
        shape = out;
    }
    const bool first_input_gradient = model.layer(0).input_gradient();
    std::vector<double> times;
    for (int r = 0; r < repeats + 2; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (Conv& c : convs) {
            c.layer->set_input_gradient(true);  // oneDNN's figure includes every backward-data
            c.layer->forward(c.x, c.y);
            c.layer->backward(c.x, c.y, c.dy, c.dx);
        }
        if (r >= 2) times.push_back(seconds_since(t0));
    }
    model.layer(0).set_input_gradient(first_input_gradient);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

/// Whole-model figures, the ones bench/compare_pytorch.py puts beside PyTorch's: one JSON line.
inline int run_throughput(facet::Sequential<float>& model, std::size_t batch, int repeats) {
    using clock = std::chrono::steady_clock;
    facet::Rng rng(11);
    facet::Tensor<float> x(facet::batch_shape(batch, model.input_shape())),
        one(facet::batch_shape(1, model.input_shape()));
    x.fill_normal(rng, 0, 1);
    one.fill_normal(rng, 0, 1);
    std::vector<int> labels(batch);
    for (auto& l : labels) l = static_cast<int>(rng.below(7));
    facet::SoftmaxCrossEntropy<float> loss;
    facet::AdamW<float> adam(model.parameters(), {});
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::vector<double> train, infer, latency;
    for (int r = 0; r < repeats + 2; ++r) {  // two warm-up steps fill the caches and workspaces
        auto t0 = clock::now();
        model.train_step(x, labels, loss, adam);
        if (r >= 2) train.push_back(seconds_since(t0));
    }
    for (int r = 0; r < repeats + 1; ++r) {
        auto t0 = clock::now();
        model.predict(x);
        if (r >= 1) infer.push_back(seconds_since(t0));
    }
    for (int r = 0; r < 50; ++r) {
        auto t0 = clock::now();
        model.predict(one);
        if (r >= 5) latency.push_back(seconds_since(t0));
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double convs = conv_stack_seconds(model, batch, repeats);  // after the memory figure
    // Rounded to what the measurement resolves; the key order is the one printed.
    auto rounded = [](double v, double per_unit) { return std::round(v * per_unit) / per_unit; };
    nlohmann::ordered_json line;
    line["threads"] = facet::num_threads();
    line["precision"] = facet::precision_name(facet::current_context().precision);
    line["batch"] = batch;
    line["train_images_per_second"] = rounded(static_cast<double>(batch) / median(train), 100);
    line["inference_images_per_second"] = rounded(static_cast<double>(batch) / median(infer), 100);
    line["latency_ms"] = rounded(1e3 * median(latency), 1000);
    line["peak_rss_mb"] = rounded(usage.ru_maxrss / 1024.0, 10);
    line["conv_stack_ms"] = rounded(1e3 * convs, 100);
    std::cout << line.dump() << std::endl;
    return 0;
}

/// `fer bench --latency`: batch-1 latency and file size of the fp32, folded fp32 and int8 versions
/// of one model, measured in one run.
inline int run_latency(const std::string& model_arg, int runs, bool json) {
    using clock = std::chrono::steady_clock;
    const bool from_file = fs::is_regular_file(model_arg);
    facet::check(from_file || (model_arg.find('/') == std::string::npos &&
                               model_arg.find(".facet") == std::string::npos),
                 "bench: no model file at ", model_arg);
    facet::Sequential<float> fp32 =
        from_file ? facet::load<float>(model_arg) : build_model(model_arg, 1);
    fp32.set_mode(facet::Mode::Eval);
    for (const auto& layer : fp32.layers())
        facet::check(layer->quantized_tensors().empty(), "bench --latency: ", model_arg,
                     " is already int8; give the float model it was made from");
    const std::vector<unsigned char> fp32_bytes = facet::encode_model(fp32);
    facet::Sequential<float> folded = facet::decode_model<float>(fp32_bytes, model_arg);
    facet::fold_batchnorm(folded);
    facet::Rng rng(17);
    facet::Tensor<float> calibration(facet::batch_shape(32, fp32.input_shape()));
    calibration.fill_normal(rng, 0, 1);
    facet::Sequential<float> int8 = facet::quantize_model(folded, {calibration});
    const std::size_t sizes[3] = {fp32_bytes.size(), facet::encode_model(folded).size(),
                                  facet::encode_model(int8).size()};

    facet::Tensor<float> one(facet::batch_shape(1, fp32.input_shape()));
    one.fill_normal(rng, 0, 1);
    facet::Sequential<float>* models[3] = {&fp32, &folded, &int8};
    std::vector<double> ms[3];
    // The models take turns, so that whatever else the machine runs slows each of them alike.
    const int warm_up = 10;
    for (int r = 0; r < warm_up + runs; ++r)
        for (int m = 0; m < 3; ++m) {
            const auto t0 = clock::now();
            models[m]->predict(one);
            if (r >= warm_up) ms[m].push_back(seconds_since(t0) * 1e3);
        }
    double median[3];
    for (int m = 0; m < 3; ++m) {
        std::sort(ms[m].begin(), ms[m].end());
        median[m] = ms[m][ms[m].size() / 2];
    }
    if (json) {
        auto rounded = [](double v) { return std::round(v * 1e4) / 1e4; };
        nlohmann::ordered_json j;
        j["model"] = model_arg;
        j["threads"] = facet::num_threads();
        j["precision"] = facet::precision_name(facet::current_context().precision);
        j["runs"] = runs;
        j["gemm_isa"] = facet::gemm_isa_name(facet::gemm_isa());
        j["int8_isa"] = facet::int8_isa_name(facet::int8_isa());
        j["fp32_ms"] = rounded(median[0]);
        j["folded_ms"] = rounded(median[1]);
        j["int8_ms"] = rounded(median[2]);
        j["fp32_bytes"] = sizes[0];
        j["folded_bytes"] = sizes[1];
        j["int8_bytes"] = sizes[2];
        j["int8_latency_ratio"] = rounded(median[2] / median[0]);
        j["int8_size_ratio"] = rounded(double(sizes[2]) / double(sizes[0]));
        std::cout << j.dump() << std::endl;
        return 0;
    }
    std::printf(
        "fer bench --latency: %s, batch 1, %d threads, int8 kernel %s, GEMM %s; median of "
        "%d predictions after %d\n",
        model_arg.c_str(), facet::num_threads(), facet::int8_isa_name(facet::int8_isa()),
        facet::gemm_isa_name(facet::gemm_isa()), runs, warm_up);
    const char* names[3] = {"fp32", "fp32, batch norms folded", "int8"};
    std::printf("%-26s %10s %6s %12s %6s\n", "model", "ms", "x fp32", "file bytes", "x fp32");
    for (int m = 0; m < 3; ++m)
        std::printf("%-26s %10.3f %6.2f %12zu %6.3f\n", names[m], median[m], median[m] / median[0],
                    sizes[m], double(sizes[m]) / double(sizes[0]));
    return 0;
}

inline int run_bench(const Cli& cli) {
    const std::string name = cli.str("model");
    const long long batch = cli.integer("batch"), repeats = cli.integer("repeats"),
                    threads = cli.integer("threads");
    facet::check(batch > 0 && repeats > 0 && threads >= 0,
                 "bench: --batch and --repeats must be positive");
    facet::set_num_threads(static_cast<int>(threads));
    const facet::Precision precision = parse_precision(cli.str("precision"), "bench");
    facet::set_precision(precision);
    set_bf16_kernel(cli.str("bf16-kernel"), "bench");
    std::cerr << bf16_speed_note(precision);
    facet::set_winograd(!cli.has("im2col"));
    const long long tile = cli.integer("winograd-tile");
    facet::check(tile == 2 || tile == 4, "bench: --winograd-tile must be 2 or 4, got ", tile);
    facet::set_winograd_tile(static_cast<std::size_t>(tile));
    // What the figures below ran on: the CPU, its caches, the blocking and kernel chosen.
    if (cli.has("latency")) {
        const long long runs = cli.integer("runs");
        facet::check(runs > 0, "bench: --runs must be positive, got ", runs);
        if (!cli.has("json")) std::fputs(facet::system_summary().c_str(), stdout);
        return run_latency(name, static_cast<int>(runs), cli.has("json"));
    }
    std::fputs(facet::system_summary().c_str(), stdout);
    facet::Sequential<float> model = build_model(name, 1);
    const std::size_t B = static_cast<std::size_t>(batch);
    if (cli.has("throughput")) return run_throughput(model, B, static_cast<int>(repeats));
    if (cli.has("eval")) return run_eval_table(model, name, B, static_cast<int>(repeats));

    std::vector<std::pair<std::string, LayerTimes>> runs;
    runs.emplace_back("facet", time_layers(model, B, static_cast<int>(repeats)));
#if defined(FACET_HAVE_EIGEN)
    facet::set_gemm_backend(facet::GemmBackend::Eigen);
    runs.emplace_back("eigen", time_layers(model, B, static_cast<int>(repeats)));
    facet::set_gemm_backend(facet::GemmBackend::Facet);
#endif
    std::printf("fer bench: %s, batch %zu, %s; median of %lld steps\n", name.c_str(), B,
                kernels_in_use().c_str(), repeats);
    std::printf("%-3s %-34s %9s", "#", "layer", "MFLOP/img");
    for (const auto& [backend, _] : runs)
        std::printf(" | %6s fwd ms  bwd ms  GFLOP/s  share", backend.c_str());
    std::printf("\n");
    std::vector<double> totals(runs.size(), 0.0);
    for (std::size_t r = 0; r < runs.size(); ++r)
        for (std::size_t i = 0; i < runs[r].second.forward_ms.size(); ++i)
            totals[r] += runs[r].second.forward_ms[i] + runs[r].second.backward_ms[i];
    double total_flops = 0;
    for (std::size_t i = 0; i < model.layers().size(); ++i) {
        // A training step costs about 3x the forward FLOPs (forward, backward-data,
        // backward-weights).
        const double f = static_cast<double>(
            model.layer(i).flops(i == 0 ? model.input_shape() : model.output_shape(i - 1)));
        total_flops += f;
        const std::string what = i > 0 && model.fused_with_next(i - 1)
                                     ? "  (ReLU: run inside the line above)"
                                     : model.layer(i).describe();
        std::printf("%-3zu %-34.34s %9.2f", i, what.c_str(), f / 1e6);
        for (std::size_t r = 0; r < runs.size(); ++r) {
            const double ms = runs[r].second.forward_ms[i] + runs[r].second.backward_ms[i];
            std::printf(" | %13.2f %7.2f %8.1f %5.1f%%", runs[r].second.forward_ms[i],
                        runs[r].second.backward_ms[i],
                        ms > 0 ? 3 * f * static_cast<double>(B) / (ms * 1e6) : 0.0,
                        100 * ms / totals[r]);
        }
        std::printf("\n");
    }
    std::printf("%-38s %9.2f", "total (forward + backward)", total_flops / 1e6);
    for (std::size_t r = 0; r < runs.size(); ++r)
        std::printf(" | %13.1f ms/step %6.1f img/s       ", totals[r],
                    1e3 * static_cast<double>(B) / totals[r]);
    std::printf("\n");
    return 0;
}

}  // namespace fer
