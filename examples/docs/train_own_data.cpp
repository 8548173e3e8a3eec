// train_own_data.cpp — train a classifier on your own image folders with facet::Trainer (quoted
// in docs/embedding.md). It first writes a toy data set, root/train/<class>/*.png, where "happy"
// images are bright at the top and "sad" ones at the bottom; exits non-zero unless validation
// accuracy reaches 90 %.
#define FACET_IMPLEMENT_STB
#include <algorithm>
#include <cstdio>
#include <facet/facet.hpp>
#include <filesystem>
#include <string>
#include <vector>

using namespace facet;
namespace fs = std::filesystem;

void write_toy_folder(const fs::path& root) {
    Rng rng(7);
    std::vector<std::uint8_t> pixels(32 * 32);
    for (const std::string label : {"happy", "sad"}) {
        fs::create_directories(root / "train" / label);
        for (int i = 0; i < 40; ++i) {
            for (std::size_t p = 0; p < pixels.size(); ++p) {
                const bool top = p < pixels.size() / 2;
                const double bright = (top == (label == "happy")) ? 150 : 60;
                pixels[p] =
                    static_cast<std::uint8_t>(std::clamp(rng.normal(bright, 40), 0.0, 255.0));
            }
            write_png(root / "train" / label / (std::to_string(i) + ".png"), pixels.data(), 32, 32);
        }
    }
}

int main() {
    const fs::path root = fs::temp_directory_path() / "facet_train_own_data";
    fs::remove_all(root);
    write_toy_folder(root);

    // Your data: folders of images, one per class. Hold a fifth of each class out for validation.
    const DataSplits data = load_dataset(root);  // gray; classes and size from the folders
    const StratifiedSplit split = stratified_split(data.at("train"), 0.2, /*seed=*/1);
    const Normalization norm = Normalization::of(split.kept);
    BatchOptions batches;  // shuffled every epoch, seeded; augment = true to jitter images
    batches.batch_size = 16;
    BatchLoader loader(split.kept, norm, batches);
    LoaderBatches train(loader);
    DatasetBatches validation(split.held_out, norm);

    Sequential<float> model(Shape{1, 32, 32});
    model.add<Conv2d<float>>(1, 8, 3, 2, 1);  // (8, 16, 16)
    model.add<ReLU<float>>();
    model.add<MaxPool2d<float>>(4);  // (8, 4, 4)
    model.add<Flatten<float>>();
    model.add<Dense<float>>(8 * 4 * 4, split.kept.num_classes());
    AdamW<float> optimizer(model.parameters(), {.learning_rate = 0.01});
    ConstantSchedule schedule(0.01);

    Trainer trainer(model, optimizer, schedule, {.epochs = 5});
    trainer.add<ProgressBar>();
    trainer.add<JsonLog>((root / "log.jsonl").string());
    trainer.add<BestModel>((root / "best.facet").string());  // the best validation accuracy
    trainer.add<EarlyStopping>(3);
    trainer.add<CheckpointSaver>((root / "checkpoint.facet").string());  // resume() continues
    const TrainSummary result = trainer.fit(train, validation);

    std::printf("best validation accuracy %.3f (epoch %zu)\n", result.best_val_accuracy,
                result.best_epoch);
    fs::remove_all(root);
    return result.best_val_accuracy >= 0.9 ? 0 : 1;
}
