// training_loop.cpp — one epoch of training written out step by step: BatchLoader -> forward ->
// loss -> backward -> clipping -> optimiser, then evaluation with the metrics module (quoted in
// docs/architecture.md). A second model trained with Sequential::train_step on the same batches
// must end with bit-identical weights; the program exits non-zero if it does not. The data are
// the fer program's synthetic faces (examples/fer/synthetic_faces.hpp): any Dataset would do.
#include <cstdio>
#include <facet/facet.hpp>
#include <vector>

#include "fer/synthetic_faces.hpp"

using namespace facet;

Sequential<float> tiny_cnn() {
    Sequential<float> model(Shape{1, 48, 48});
    model.add<Conv2d<float>>(1, 8, 3, 1, 1, false, /*seed=*/5);
    model.add<BatchNorm2d<float>>(8);
    model.add<ReLU<float>>();
    model.add<MaxPool2d<float>>(4);  // (8, 12, 12)
    model.add<Flatten<float>>();
    model.add<Dropout<float>>(0.25, /*seed=*/9);
    model.add<Dense<float>>(8 * 12 * 12, 7, true, /*seed=*/6);
    return model;
}

int main() {
    fer::SyntheticFaceOptions faces;
    faces.train_per_class = 16, faces.test_per_class = 8;
    const DataSplits data = fer::make_synthetic_faces(faces);
    const Dataset& train = data.at("synthetic-train");
    const Dataset& test = data.at("synthetic-test");

    BatchOptions options;
    options.batch_size = 32, options.augment = true, options.seed = 1;
    BatchLoader loader(train, Normalization::of(train), options);  // a worker thread prefetches

    Sequential<float> by_hand = tiny_cnn(), by_train_step = tiny_cnn();
    SoftmaxCrossEntropy<float> loss(/*label_smoothing=*/0.1);
    SgdOptions sgd;
    sgd.momentum = 0.9, sgd.nesterov = true, sgd.weight_decay = 1e-4;
    SGD<float> opt_a(by_hand.parameters(), sgd), opt_b(by_train_step.parameters(), sgd);
    const CosineSchedule schedule(0.05, /*warmup_steps=*/2,
                                  /*total_steps=*/loader.batches_per_epoch());
    const double max_norm = 5.0;

    std::size_t step = 0;
    loader.start_epoch(0);
    for (Batch batch; loader.next(batch); ++step) {  // batch.images is (N, 1, 48, 48)
        opt_a.set_learning_rate(schedule.rate(step));
        opt_b.set_learning_rate(schedule.rate(step));

        // What Sequential::train_step does, spelled out:
        by_hand.set_mode(Mode::Train);
        const Tensor<float>& logits = by_hand.forward(batch.images);  // (N, 7); activations kept
        const float mean_loss = loss.forward(logits, batch.labels);   // keeps softmax(logits)
        Tensor<float> dlogits;
        loss.backward(dlogits);     // (probs - smoothed one-hot) / N
        by_hand.backward(dlogits);  // assigns every parameter's gradient
        clip_gradient_norm(by_hand.parameters(), max_norm);
        opt_a.step();

        const StepResult r =
            by_train_step.train_step(batch.images, batch.labels, loss, opt_b, max_norm);
        std::printf("step %zu  lr %.4f  loss %.4f / %.4f  |g| %.3f\n", step, schedule.rate(step),
                    mean_loss, r.loss, r.gradient_norm);
    }

    bool identical = true;
    for (std::size_t i = 0; i < by_hand.parameters().size(); ++i) {
        const Tensor<float>& a = *by_hand.parameters()[i].value;
        const Tensor<float>& b = *by_train_step.parameters()[i].value;
        for (std::size_t k = 0; k < a.size(); ++k) identical = identical && a[k] == b[k];
    }

    // Evaluation: no augmentation, no shuffling; predict() runs the model in Mode::Eval.
    BatchOptions eval_options;
    eval_options.shuffle = false;
    BatchLoader eval_loader(test, loader.normalization(), eval_options);
    ConfusionMatrix confusion(test.num_classes());
    eval_loader.start_epoch(0);
    for (Batch batch; eval_loader.next(batch);) {
        const Tensor<float>& probs = by_hand.predict(batch.images);
        for (std::size_t n = 0; n < batch.labels.size(); ++n) {
            int best = 0;
            for (int k = 1; k < 7; ++k)
                if (probs(n, k) > probs(n, best)) best = k;
            confusion.add(batch.labels[n], best);
        }
    }
    const ClassificationReport report = classification_report(confusion, test.class_names);
    std::printf("%s", report.metrics_table().c_str());
    std::printf("manual loop and train_step: %s weights\n", identical ? "identical" : "DIFFERENT");
    return identical ? 0 : 1;
}
