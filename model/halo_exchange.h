#pragma once
// The halo of a chunk under context parallelism (model/context_parallel.h): for each head h, the
// keys and values of the lengths[h] positions before the chunk, gathered from the ranks that own
// them with point-to-point messages; in backward their gradients go back to the owners.
//
// Positions count from the current block's start (negative: earlier blocks). With chunks of m
// rows, C per block, the m rows of chunk g = floor(p / m) live on rank g mod C, in block
// floor(g / C): block 0 is the owner's fresh keys and values (they carry gradients), an earlier
// block is in the owner's history (its own chunks of the last blocks, oldest first, detached).
#include "model/context_parallel.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace adaspan::model {

struct HaloPiece {
  int owner = 0;           // the rank holding the rows
  int64_t block = 0;       // 0: the owner's current chunk; -1: the block before; ...
  int64_t source_row = 0;  // first row in the owner's current chunk (block 0) or history (< 0)
  int64_t halo_row = 0;    // first row in the receiver's halo (of `length` rows)
  int64_t rows = 0;
};

// The `length` positions before chunk `receiver`, as pieces of their owners' rows in position
// order; the history holds `history_blocks` chunks per rank. Rows older than the history are not
// listed (they are zero: before the start of training, or beyond every window).
std::vector<HaloPiece> halo_pieces(int receiver, int chunks, int64_t chunk, int64_t length, int64_t history_blocks);

struct Halo {
  // This chunk's keys and values as given, to be used in their place: their backward adds the
  // gradients the later chunks send back for the rows they received.
  at::Tensor own_keys, own_values;
  // [B, H, L, dh]: head h's halo is its last `lengths[h]` rows (the rest zero), L the longest.
  at::Tensor keys, values;
  std::vector<int64_t> lengths;  // this chunk's windows, cut where the positions start (no history yet)
};

// One exchange, collective over cp.group: the constructor posts every send and receive, finish()
// waits for them and returns the halo; in between the caller computes what needs no halo (the
// chunk-local part of attention), calling poll() now and then so that MPI moves the messages.
// windows: every chunk's halo length per head, chunk-major ([C x H], the same table on every
// rank): chunk c's halo of head h is windows[c·H + h] rows, cut where the positions start.
// keys, values: this chunk's [B, H, m, dh]; history_keys, history_values: [B, H,
// history_blocks·m, dh], history_blocks = 0 before the first block ends. All of them, and cp,
// must outlive the exchange. Adds what it sends and waits for to cp.traffic.
class HaloExchange {
 public:
  HaloExchange(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& history_keys,
               const at::Tensor& history_values, const std::vector<int64_t>& windows, const ContextParallel& cp);
  ~HaloExchange();
  HaloExchange(const HaloExchange&) = delete;
  HaloExchange& operator=(const HaloExchange&) = delete;
  void poll();
  // This chunk's halo length per head (Halo::lengths), known before the rows come.
  const std::vector<int64_t>& lengths() const { return lengths_; }
  Halo finish();  // once

 private:
  struct InFlight;
  at::Tensor keys_, values_, history_keys_, history_values_;
  std::vector<int64_t> windows_, lengths_;
  const ContextParallel& cp_;
  std::unique_ptr<InFlight> in_flight_;
};

}  // namespace adaspan::model
