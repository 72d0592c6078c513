#pragma once
// Optimizers over a flat list of parameters, each a few lines of tensor math so the state is
// explicit (it goes into checkpoints and, later, is sharded).
//
// Adagrad with per-tensor step clipping (the reference's AdagradWithGradClip): per tensor p
// with gradient g,  sum += g*g;  clr = lr * min(1, clip / (|g|_2 + 1e-10));
//                   p -= clr * g / (sqrt(sum) + 1e-10).
// Adam (Kingma & Ba 2015) with bias correction, after a global gradient-norm clip.
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace adaspan::trainer {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update with learning rate lr from the .grad() of each parameter.
  virtual void step(double lr) = 0;
  virtual std::string name() const = 0;  // "adagrad" | "adam"
  // State per parameter, by slot ("sum"; "exp_avg", "exp_avg_sq"), as whole tensors shaped as the
  // parameters: export_slot(s)[i] belongs to parameter i. A sharded optimizer assembles them
  // (collective: every rank calls it) and keeps only its shard on import.
  virtual std::vector<std::string> slots() const = 0;
  virtual std::vector<at::Tensor> export_slot(const std::string& name) = 0;
  virtual void import_slot(const std::string& name, const std::vector<at::Tensor>& whole) = 0;
  // Bytes of state this rank holds.
  virtual int64_t state_bytes() const = 0;
  // Updates done so far (Adam's bias correction depends on it).
  virtual int64_t steps_taken() const = 0;
  virtual void set_steps_taken(int64_t steps) = 0;
};

// With tensor parallelism a rank holds slices of some parameters, so its squared gradient norms of
// those are partial: `complete(squares)` (one entry per parameter, in place) sums them over the
// group. Empty: every parameter is whole.
using CompleteSquares = std::function<void(std::vector<double>& squares)>;

std::unique_ptr<Optimizer> make_adagrad(std::vector<at::Tensor> params, double clip, CompleteSquares complete = {});
std::unique_ptr<Optimizer> make_adam(std::vector<at::Tensor> params, double clip, double beta1, double beta2,
                                     double eps, CompleteSquares complete = {});

// Reference warmup: update n (1-based) uses lr * min(1, n / warmup).
double warmup_lr(double lr, int64_t step, int64_t warmup_steps);

}  // namespace adaspan::trainer
