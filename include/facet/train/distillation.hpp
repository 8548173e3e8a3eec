// facet/train/distillation.hpp — Distillation: a callback that makes a teacher model's
// probabilities part of the training targets (knowledge distillation, Hinton et al. 2015). Before
// each step the teacher, in inference mode, classifies the very batch the student is about to
// train on (augmented as it is), and the loss's target for sample n becomes
// (1 - a_n) label_n + a_n teacher_n (SoftmaxCrossEntropy::set_teacher). With the parent model
// as teacher and a_n > 0 on rehearsal samples, fine-tuning learns new faces while its answers on
// the old ones stay close to the parent's ("learning without forgetting", Li & Hoiem 2016).
//
//     Distillation& d = trainer.add<Distillation>(parent, [&](std::size_t index) {
//         return index >= first_rehearsal ? 0.5 : 0.0;  // share of the teacher, per sample
//     });
//
// Several teachers make an ensemble: their probabilities are averaged, row by row, and the
// average is the teacher (distilling an ensemble into one small model, Hinton et al. 2015).
//
// Read next: train/trainer.hpp.
#pragma once

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "facet/model/sequential.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Distils `teacher` (kept by reference; it must outlive the Trainer and is never trained) into
/// the Trainer's model: `share(i)` in [0, 1] is how much of data set sample i's target the
/// teacher's probabilities make (Batch::indices name the samples).
class Distillation : public Callback {
  public:
    Distillation(Sequential<float>& teacher, std::function<double(std::size_t)> share)
        : Distillation(std::vector<Sequential<float>*>{&teacher}, std::move(share)) {}

    /// An ensemble of teachers (each kept by pointer, none null), their probabilities averaged.
    Distillation(std::vector<Sequential<float>*> teachers, std::function<double(std::size_t)> share)
        : teachers_(std::move(teachers)), share_(std::move(share)) {
        check(static_cast<bool>(share_), "Distillation: no share function");
        check(!teachers_.empty(), "Distillation: no teacher");
        for (const Sequential<float>* t : teachers_)
            check(t != nullptr, "Distillation: a null teacher");
    }

    void on_batch_begin(Trainer& trainer, Batch& batch) override {
        std::vector<double> shares(batch.size());
        bool any = false;
        for (std::size_t n = 0; n < shares.size(); ++n) {
            shares[n] = share_(batch.indices.at(n));
            any = any || shares[n] > 0;
        }
        if (!any) {  // nothing to distil in this batch: save the teacher's forward pass
            trainer.loss().clear_teacher();
            return;
        }
        // predict(): the fused inference pass (batch norms folded into the layers before them,
        // dropout skipped), the same values as forward() in Mode::Eval and less work.
        Tensor<float> probabilities = teachers_[0]->predict(batch.images);
        for (std::size_t m = 1; m < teachers_.size(); ++m) {
            const Tensor<float>& one = teachers_[m]->predict(batch.images);
            check(one.shape() == probabilities.shape(), "Distillation: teacher ", m, " gives ",
                  one.shape().str(), ", teacher 0 ", probabilities.shape().str());
            for (std::size_t k = 0; k < one.size(); ++k) probabilities[k] += one[k];
        }
        if (teachers_.size() > 1) {
            const float inverse = 1.0f / static_cast<float>(teachers_.size());
            for (float& p : probabilities) p *= inverse;
        }
        trainer.loss().set_teacher(std::move(probabilities), std::move(shares));
        ++distilled_batches_;
    }
    void on_train_end(Trainer& trainer, const TrainSummary&) override {
        trainer.loss().clear_teacher();
    }

    /// Batches in which some sample had a share of the teacher.
    std::size_t distilled_batches() const { return distilled_batches_; }

  private:
    std::vector<Sequential<float>*> teachers_;
    std::function<double(std::size_t)> share_;
    std::size_t distilled_batches_ = 0;
};

}  // namespace facet
