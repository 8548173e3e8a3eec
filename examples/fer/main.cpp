// fer — trains, evaluates and uses a facial-emotion CNN on FER-2013, built on facet.
//
// clang-format off
//   fer train       [--data DIR|CSV] [--out DIR] [--epochs N] ...  train (default recipe: no flags)
//   fer eval        [--model FILE] [--data ...] [--split NAME]     accuracy, per class, confusion
//   fer predict     [--model FILE] IMAGE|FOLDER... [--json]        faces in photos, their emotions
//   fer video       [--model FILE] INPUT | --camera N              the same on a video or a webcam
//   fer video-bench [--frames N] [--json]                          fer video's speed, by stage
//   fer report      --run DIR [--data ...] [-o FILE]               HTML report of a training run
//   fer bench       [--model NAME] [--batch N] [--threads N]       per-layer timings
// clang-format on
//
// Without --model, eval, predict and video use runs/default/model.facet, else the shipped
// models/fer.facet (default_model.hpp). The subcommands live in the headers beside this file;
// this file only dispatches.
#define FACET_IMPLEMENT_STB  // this translation unit compiles stb_image and stb_image_write
#include <facet/data/image.hpp>

#include <cstring>
#include <iostream>

#include "bench.hpp"
#include "evaluate.hpp"
#include "predict.hpp"
#include "report.hpp"
#include "train.hpp"
#ifdef FACET_HAVE_VIDEO
#include "video_bench.hpp"
#endif

namespace {

const char* usage =
    "usage: fer <command> [options]     (fer <command> --help for the options)\n\n"
    "commands:\n"
    "  train    train the emotion CNN (FER-2013 from data/fer2013 or --data; synthetic faces "
    "otherwise)\n"
    "  eval     accuracy, per-class precision/recall/F1 and the confusion matrix of a trained "
    "model\n"
    "  predict  finds the faces in photos and gives each one's emotion\n"
    "  report   a self-contained HTML report of a training run\n"
    "  bench    per-layer forward/backward timings of the model\n"
#ifdef FACET_HAVE_VIDEO
    "  video    emotions of the faces in a video file or a webcam, tracked across frames\n"
    "  video-bench  frames per second of fer video on generated video, stage by stage\n"
#endif
    ;

int dispatch(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::cout << usage;
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    auto run = [&](fer::Cli cli, auto body) {
        if (!cli.parse(argc, argv, 2)) {
            std::cout << cli.help();
            return 0;
        }
        return body(cli);
    };
    if (command == "train")
        return run(fer::train_cli(),
                   [](const fer::Cli& c) { return fer::run_train(fer::train_config(c)); });
    if (command == "eval") return run(fer::eval_cli(), fer::run_eval);
    if (command == "predict") return run(fer::predict_cli(), fer::run_predict);
    if (command == "report") return run(fer::report_cli(), fer::run_report);
    if (command == "bench") return run(fer::bench_cli(), fer::run_bench);
#ifdef FACET_HAVE_VIDEO
    if (command == "video") return run(fer::video_cli(), fer::run_video);
    if (command == "video-bench") return run(fer::video_bench_cli(), fer::run_video_bench);
#endif
    std::cerr << "fer: unknown command '" << command << "'\n" << usage;
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return dispatch(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "fer: error: " << e.what() << "\n";
        return 1;
    }
}
