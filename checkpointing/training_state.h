#pragma once
// Everything a training run needs to continue exactly where it stopped, as plain tensors and
// numbers (no model or optimizer objects: trainer/ maps those to and from this).
//
// Logical, layout-independent content: parameters and optimizer state are whole tensors under
// their canonical names; stream positions cover all B global streams; caches are rows of global
// streams. Only the RNG states belong to the writer's layout (one per data-parallel rank).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::checkpointing {

// Pieces of a tensor that ranks hold apart (tensor parallelism, streams over data parallelism):
// this rank's pieces lie along `dim` at `offsets` (ascending), each `extent` long, concatenated
// along `dim` in NamedTensor::tensor; `full_shape` is the whole tensor's. No offsets: this rank
// writes none of it (it still takes part in the collective write).
struct Pieces {
  int dim = -1;  // -1: not in pieces; every rank holds the whole tensor
  int64_t extent = 0;
  std::vector<int64_t> offsets;
  std::vector<int64_t> full_shape;
};

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
  Pieces pieces;
};

struct TrainingState {
  int64_t step = 0;             // optimizer updates done
  int64_t tokens_seen = 0;      // bytes trained on, all ranks
  std::string run_id;           // the run (lineage) that wrote it; "" in files from before run ids
  bool adopts_unnamed = false;  // the lineage began from a file without a run id: such files are its own
  int64_t halved_lr_until = 0;  // after a rollback: the learning rate is halved up to this step (0: none)
  std::string config_json;      // the run's whole configuration

  std::vector<NamedTensor> parameters;  // whole tensors, e.g. "layers.0.attn.proj_query.weight"
  std::string optimizer;                // "adagrad" | "adam"
  int64_t optimizer_steps = 0;
  std::vector<NamedTensor> optimizer_state;  // "SLOT/PARAMETER", whole tensors shaped as the parameter

  std::vector<int64_t> stream_positions;  // [B] next byte of each global stream
  // Rows of this rank's streams ([local_streams, ...]) as pieces along dim 0; names
  // "layer.L/keys.H", "layer.L/values.H" (kv cache, H canonical) or "layer.L/hidden" (hidden
  // cache). Absent = empty cache. When read: this rank's rows of every head.
  std::vector<NamedTensor> cache;
  at::Tensor rng_cpu;   // this rank's CPU generator state (uint8); undefined when not restorable
  at::Tensor rng_cuda;  // this rank's CUDA generator state; undefined on CPU
  // The open metrics window (float64 [nll sum, steps]): this rank's when written; when read, every
  // writer rank's ([writer_ranks, 2]), so metrics continue exactly on the same layout.
  at::Tensor metrics_window;

  std::vector<std::vector<double>> spans;       // [layer][head] learned span, bytes
  std::vector<std::vector<int64_t>> placement;  // [layer][head] tensor-parallel rank holding the head
};

}  // namespace adaspan::checkpointing
