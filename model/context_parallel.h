#pragma once
// Context parallelism: a block of M positions cut into C chunks of M / C, chunk c on rank c of
// the context-parallel group. Every layer is position-wise except attention, whose queries need
// the keys and values of the positions before their chunk: for head h only the last W_h of them
// (its window), fetched from the ranks that own them (model/halo_exchange.h). Each rank keeps the
// keys and values of its own chunks of the last blocks as its cache, so no rank holds the whole
// Transformer-XL cache.
#include "model/process_group.h"

#include <cstdint>
#include <memory>

namespace adaspan::model {

// What the halos cost, summed since the last reset (the trainer logs and resets it).
struct HaloTraffic {
  double bytes_sent = 0;    // keys, values and their gradients sent to other ranks
  double wait_seconds = 0;  // waiting for them to arrive
};

struct ContextParallel {
  ProcessGroup* group = nullptr;  // the ranks holding the chunks of the same blocks; null: C = 1
  // The same ranks for the halos' keys and values when they have their own group (NCCL for CUDA
  // tensors); null: `group` carries them. `group` keeps the host tables (windows, span statistics).
  ProcessGroup* halos = nullptr;
  int rank = 0, size = 1;  // chunk index, chunks per block
  std::shared_ptr<HaloTraffic> traffic = std::make_shared<HaloTraffic>();

  bool enabled() const { return group != nullptr && size > 1; }
  ProcessGroup* halo_group() const { return halos != nullptr ? halos : group; }
};

}  // namespace adaspan::model
