// fer — trains, evaluates and uses a facial-emotion CNN on FER-2013, built on facet.
//
// clang-format off
//   fer train       [--data DIR|CSV] [--out DIR] [--epochs N] ...  train (default recipe: no flags)
//   fer eval        [--model FILE...] [--data ...] [--split NAME]  accuracy, per class, confusion
//   fer predict     [--model FILE] IMAGE|FOLDER... [--json]        faces in photos, their emotions
//   fer video       [--model FILE] INPUT | --camera N              the same on a video or a webcam
//   fer video-bench [--frames N] [--json]                          fer video's speed, by stage
//   fer report      --run DIR [--data ...] [-o FILE]               HTML report of a training run
//   fer bench       [--model NAME] [--batch N] [--threads N]       per-layer timings
//   fer convert     --model FILE -o FILE [--weights f16] [--fold]  rewrite a model file
//   fer export      --onnx FILE [--model FILE]                     ONNX for other runtimes
//   fer quantize    --model FILE -o OUT.facet [--calib N]          an int8 model for inference
//   fer correct     FACE.png EMOTION [--into DIR]                  file a correction
//   fer finetune    --model FILE --corrections DIR --out FILE      learn from corrections
//   fer shift       --split train|test --out DIR                   faces as another camera sees them
// clang-format on
//
// Without --model, eval, predict and video use runs/default/model.facet, else the shipped
// models/fer.facet (default_model.hpp). The subcommands live in the headers beside this file;
// this file only dispatches.
#define FACET_IMPLEMENT_STB  // this translation unit compiles stb_image and stb_image_write
#include <facet/data/image.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "bench.hpp"
#include "convert.hpp"
#include "corrections.hpp"
#include "domain_shift.hpp"
#include "evaluate.hpp"
#include "export.hpp"
#include "finetune.hpp"
#include "predict.hpp"
#include "quantize.hpp"
#include "report.hpp"
#include "train.hpp"
#ifdef FACET_HAVE_VIDEO
#include "video_bench.hpp"
#endif
#ifdef FACET_HAVE_MPI
#include <facet/distributed/mpi.hpp>
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
    "  correct  files a face with its right emotion into the corrections folder\n"
    "  finetune adapts a trained model to corrections, rehearsing FER-2013 so as not to forget "
    "it\n"
    "  shift    writes FER-2013 faces as another camera sees them (for measuring adaptation)\n"
    "  report   a self-contained HTML report of a training run\n"
    "  bench    per-layer forward/backward timings of the model (--latency: fp32 against "
    "int8)\n"
    "  convert  rewrites a model file: f16/bf16 weights, batch norms folded\n"
    "  export   writes the model as an ONNX file for other runtimes\n"
    "  quantize an int8 model for inference from a trained model\n"
#ifdef FACET_HAVE_VIDEO
    "  video    emotions of the faces in a video file or a webcam, tracked across frames\n"
    "  video-bench  frames per second of fer video on generated video, stage by stage\n"
#endif
    ;

/// `fer train`; under an MPI launcher (mpirun -np N fer train ...), the N processes train one
/// model data-parallel, and only rank 0 prints and writes files.
int train(const fer::Cli& cli) {
    fer::TrainConfig config = fer::train_config(cli);
#ifdef FACET_HAVE_MPI
    if (facet::launched_by_mpi()) {
        facet::MpiEnvironment mpi;
        facet::MpiCommunicator world;
        config.communicator = &world;
        if (config.threads == 0) {  // share the machine's cores among its processes
            const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
            const int here = local ? std::max(1, std::atoi(local)) : 1;
            const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
            config.threads = std::max(1, cores / here);
        }
        std::streambuf* const console = std::cout.rdbuf();
        if (!world.is_root()) std::cout.rdbuf(nullptr);  // one report: rank 0's
        try {
            const int status = fer::run_train(config);
            std::cout.rdbuf(console);
            return status;
        } catch (const std::exception& e) {
            std::cout.rdbuf(console);
            std::cerr << "fer: error (process " << world.rank() << " of " << world.size()
                      << "): " << e.what() << "\n";
            // The others may be waiting for this one in a collective call: end them all.
            if (world.size() > 1) facet::MpiEnvironment::abort(1);
            return 1;
        }
    }
#endif
    return fer::run_train(config);
}

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
    if (command == "train") return run(fer::train_cli(), train);
    if (command == "eval") return run(fer::eval_cli(), fer::run_eval);
    if (command == "predict") return run(fer::predict_cli(), fer::run_predict);
    if (command == "correct") return run(fer::correct_cli(), fer::run_correct);
    if (command == "finetune") return run(fer::finetune_cli(), fer::run_finetune);
    if (command == "shift") return run(fer::shift_cli(), fer::run_shift);
    if (command == "report") return run(fer::report_cli(), fer::run_report);
    if (command == "bench") return run(fer::bench_cli(), fer::run_bench);
    if (command == "convert") return run(fer::convert_cli(), fer::run_convert);
    if (command == "export") return run(fer::export_cli(), fer::run_export);
    if (command == "quantize") return run(fer::quantize_cli(), fer::run_quantize);
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
