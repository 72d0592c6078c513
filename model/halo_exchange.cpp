#include "model/halo_exchange.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

namespace adaspan::model {
namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

struct Entry {
  int64_t head = 0;
  HaloPiece piece;
};

// Who sends which rows to whom in one exchange, the same on every rank of the group.
struct Plan {
  std::map<int, std::vector<Entry>> to;    // peer -> rows of mine it needs
  std::map<int, std::vector<Entry>> from;  // peer -> rows of its I need
  std::vector<Entry> local;                // rows of my own history in my halo
};

// A head's halo for chunk `receiver`: its window, cut at the first position there is (the start
// of training or of the oldest history block), as a cache that has not filled up yet.
int64_t halo_length(int64_t window, int receiver, int chunks, int64_t chunk, int64_t history_blocks) {
  return std::min(window, (receiver + history_blocks * chunks) * chunk);
}

// windows: every chunk's windows, chunk-major ([chunks x heads]).
std::vector<int64_t> halo_lengths(const std::vector<int64_t>& windows, int receiver, int chunks, int64_t chunk,
                                  int64_t history_blocks) {
  const size_t heads = windows.size() / static_cast<size_t>(chunks);
  std::vector<int64_t> out;
  for (size_t h = 0; h < heads; ++h) {
    out.push_back(
        halo_length(windows[static_cast<size_t>(receiver) * heads + h], receiver, chunks, chunk, history_blocks));
  }
  return out;
}

Plan make_plan(const std::vector<int64_t>& windows, int me, int chunks, int64_t chunk, int64_t history_blocks) {
  Plan plan;
  const int64_t heads = static_cast<int64_t>(windows.size()) / chunks;
  for (int64_t h = 0; h < heads; ++h) {
    for (int receiver = 0; receiver < chunks; ++receiver) {
      const int64_t length = halo_length(windows[receiver * heads + h], receiver, chunks, chunk, history_blocks);
      for (const HaloPiece& piece : halo_pieces(receiver, chunks, chunk, length, history_blocks)) {
        if (receiver == me && piece.owner == me) {
          plan.local.push_back({h, piece});
        } else if (receiver == me) {
          plan.from[piece.owner].push_back({h, piece});
        } else if (piece.owner == me) {
          plan.to[receiver].push_back({h, piece});
        }
      }
    }
  }
  return plan;
}

int64_t rows_of(const std::vector<Entry>& entries, bool gradients_only) {
  int64_t rows = 0;
  for (const Entry& e : entries) rows += gradients_only && e.piece.block != 0 ? 0 : e.piece.rows;
  return rows;
}

// The owner's rows of an entry: [B, rows, dh] of its current chunk or its history.
at::Tensor source_rows(const Entry& e, const at::Tensor& current, const at::Tensor& history) {
  const at::Tensor& from = e.piece.block == 0 ? current : history;
  return from.select(1, e.head).narrow(1, e.piece.source_row, e.piece.rows);
}

// Head h's rows of a halo whose last lengths[h] rows are the head's.
at::Tensor halo_rows(const Entry& e, const at::Tensor& halo, const std::vector<int64_t>& lengths) {
  const int64_t first = halo.size(2) - lengths[static_cast<size_t>(e.head)] + e.piece.halo_row;
  return halo.select(1, e.head).narrow(1, first, e.piece.rows);
}

// The sends and receives of one exchange: queued, then posted together, timed and counted into
// the group's traffic.
class Messages {
 public:
  explicit Messages(const ContextParallel& cp) : cp_(cp) {}
  void send(at::Tensor buffer, int peer) {
    cp_.traffic->bytes_sent += static_cast<double>(buffer.numel() * buffer.element_size());
    queued_.push_back({std::move(buffer), peer, true});
  }
  // The tensor the message will arrive in (a handle on the same storage).
  at::Tensor receive(at::Tensor buffer, int peer) {
    queued_.push_back({buffer, peer, false});
    return buffer;
  }
  // Posts what was queued since the last post, as one batch.
  void post() {
    if (posted_ == queued_.size()) return;
    std::vector<PeerMessage> batch(queued_.begin() + static_cast<std::ptrdiff_t>(posted_), queued_.end());
    posted_ = queued_.size();
    work_.push_back(cp_.halo_group()->exchange_async(batch));
  }
  // Waits for everything posted, then lets its buffers go (a backward's would otherwise live until
  // the whole graph is freed: autograd keeps saved_data to the end).
  void wait() {
    const auto start = std::chrono::steady_clock::now();
    for (auto& w : work_) w->wait();
    work_.clear();
    queued_.erase(queued_.begin(), queued_.begin() + static_cast<std::ptrdiff_t>(posted_));
    posted_ = 0;
    cp_.traffic->wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  void poll() {
    for (auto& w : work_) w->poll();
  }

 private:
  const ContextParallel& cp_;
  std::vector<PeerMessage> queued_;  // kept until waited for: the backends read and write them
  size_t posted_ = 0;
  std::vector<std::unique_ptr<CollectiveWork>> work_;
};

const ContextParallel& cp_of(torch::autograd::AutogradContext* ctx) {
  return *reinterpret_cast<const ContextParallel*>(static_cast<intptr_t>(ctx->saved_data["cp"].toInt()));
}

// What both functions keep for backward, and the plan rebuilt from it there.
void remember(torch::autograd::AutogradContext* ctx, int64_t cp_handle, const std::vector<int64_t>& windows,
              int64_t history_blocks, const at::Tensor& keys) {
  ctx->saved_data["cp"] = cp_handle;
  ctx->saved_data["windows"] = windows;
  ctx->saved_data["history_blocks"] = history_blocks;
  ctx->saved_data["shape"] = keys.sizes().vec();
}

struct Remembered {
  const ContextParallel& cp;
  std::vector<int64_t> windows, shape;  // shape: this chunk's keys, [B, H, m, dh]
  int64_t history_blocks;
  Plan plan;
};

Remembered recall(torch::autograd::AutogradContext* ctx) {
  const ContextParallel& cp = cp_of(ctx);
  std::vector<int64_t> windows = ctx->saved_data["windows"].toIntVector();
  std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
  const int64_t history_blocks = ctx->saved_data["history_blocks"].toInt();
  Plan plan = make_plan(windows, cp.rank, cp.size, shape[2], history_blocks);
  return {cp, std::move(windows), std::move(shape), history_blocks, std::move(plan)};
}

// The keys and values each peer sent: peer -> [2, B, rows, dh], its rows in plan order.
using Received = std::map<int, at::Tensor>;

// A forward exchange's plan and what it brought: HaloExchange plans and posts the messages,
// HaloFunction's forward only places what arrived.
struct Arrived {
  Plan plan;
  Received received;
};

// One exchange's backward messages, shared by its two functions: HaloFunction's backward posts the
// halo's gradients to their owners and, in the same batch, the receives of the gradients the later
// chunks send for this chunk's rows, without waiting; HaloOwner's backward, later, waits and adds
// them. So no rank stops in backward until its successors' gradients have come (waiting for its
// own sends to be received would chain the ranks one after another).
struct BackwardMessages final : torch::CustomClassHolder {
  explicit BackwardMessages(const ContextParallel& cp) : messages(cp) {}
  Messages messages;
  Received received;  // the later chunks' gradients for this chunk's rows
  bool receives_posted = false, owner_done = false;
};

c10::intrusive_ptr<BackwardMessages> backward_messages(torch::autograd::AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<BackwardMessages>(ctx->saved_data["backward"].toCapsule());
}

// Queues the receives of the gradients for this chunk's rows (block 0 pieces the later chunks
// used) unless they are, then posts everything queued.
void post_backward(BackwardMessages& b, const Remembered& r, const at::TensorOptions& options) {
  if (!b.receives_posted) {
    for (const auto& [peer, entries] : r.plan.to) {
      const int64_t rows = rows_of(entries, true);
      if (rows > 0) {
        b.received[peer] = b.messages.receive(at::empty({2, r.shape[0], rows, r.shape[3]}, options), peer);
      }
    }
    b.receives_posted = true;
  }
  b.messages.post();
}

class HaloFunction : public torch::autograd::Function<HaloFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& keys,
                                                const at::Tensor& values, const at::Tensor& history_keys,
                                                const at::Tensor& history_values, std::vector<int64_t> lengths,
                                                int64_t cp_handle, int64_t arrived_handle,
                                                const c10::intrusive_ptr<BackwardMessages>& backward) {
    const auto& cp = *reinterpret_cast<const ContextParallel*>(static_cast<intptr_t>(cp_handle));
    const auto& [plan, received] = *reinterpret_cast<const Arrived*>(static_cast<intptr_t>(arrived_handle));
    const int64_t chunk = keys.size(2), history_blocks = history_keys.size(2) / chunk;
    const std::vector<int64_t> mine = halo_lengths(lengths, cp.rank, cp.size, chunk, history_blocks);
    int64_t width = 0;
    for (int64_t l : mine) width = std::max(width, l);
    at::Tensor halo_k = at::zeros({keys.size(0), keys.size(1), width, keys.size(3)}, keys.options());
    at::Tensor halo_v = at::zeros_like(halo_k);
    for (const Entry& e : plan.local) {
      halo_rows(e, halo_k, mine).copy_(source_rows(e, keys, history_keys));
      halo_rows(e, halo_v, mine).copy_(source_rows(e, values, history_values));
    }
    for (const auto& [peer, buffer] : received) {
      int64_t row = 0;
      for (const Entry& e : plan.from.at(peer)) {
        halo_rows(e, halo_k, mine).copy_(buffer.select(0, 0).narrow(1, row, e.piece.rows));
        halo_rows(e, halo_v, mine).copy_(buffer.select(0, 1).narrow(1, row, e.piece.rows));
        row += e.piece.rows;
      }
    }
    remember(ctx, cp_handle, lengths, history_blocks, keys);
    ctx->saved_data["backward"] = c10::IValue::make_capsule(backward);
    return {halo_k, halo_v};
  }

  // The halo's gradients of the rows of current chunks go back to their owners (HaloOwner's
  // backward adds them there). Nothing flows into this function's own inputs.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const Remembered r = recall(ctx);
    const std::vector<int64_t> mine = halo_lengths(r.windows, r.cp.rank, r.cp.size, r.shape[2], r.history_blocks);
    const at::Tensor halo_gk = grads[0].defined() ? grads[0] : at::zeros_like(grads[1]);
    const at::Tensor halo_gv = grads[1].defined() ? grads[1] : at::zeros_like(grads[0]);
    BackwardMessages& b = *backward_messages(ctx);
    for (const auto& [peer, entries] : r.plan.from) {
      std::vector<at::Tensor> k, v;
      for (const Entry& e : entries) {
        if (e.piece.block != 0) continue;  // an earlier block's rows: detached, nothing flows back
        k.push_back(halo_rows(e, halo_gk, mine));
        v.push_back(halo_rows(e, halo_gv, mine));
      }
      if (!k.empty()) b.messages.send(at::stack({at::cat(k, 1), at::cat(v, 1)}).contiguous(), peer);
    }
    post_backward(b, r, halo_gk.options());
    if (b.owner_done) b.messages.wait();  // else HaloOwner's backward, later, waits
    return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The identity on this chunk's keys and values, whose backward adds the gradients that the later
// chunks' halos send back for the rows they received. Every rank's own keys pass through it, so
// it runs on every rank whether or not its own halo was used.
class HaloOwner : public torch::autograd::Function<HaloOwner> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& keys,
                                                const at::Tensor& values, std::vector<int64_t> windows,
                                                int64_t history_blocks, int64_t cp_handle,
                                                const c10::intrusive_ptr<BackwardMessages>& backward) {
    remember(ctx, cp_handle, windows, history_blocks, keys);
    ctx->saved_data["backward"] = c10::IValue::make_capsule(backward);
    return {keys.clone(), values.clone()};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const Remembered r = recall(ctx);
    const at::TensorOptions options = grads[0].defined() ? grads[0].options() : grads[1].options();
    at::Tensor grad_k = grads[0].defined() ? grads[0].clone() : at::zeros(r.shape, options);
    at::Tensor grad_v = grads[1].defined() ? grads[1].clone() : at::zeros(r.shape, options);
    BackwardMessages& b = *backward_messages(ctx);
    post_backward(b, r, options);  // the receives, if HaloFunction's backward has not run (or will not)
    b.messages.wait();
    b.owner_done = true;
    for (const auto& [peer, buffer] : b.received) {
      int64_t row = 0;
      for (const Entry& e : r.plan.to.at(peer)) {
        if (e.piece.block != 0) continue;
        grad_k.select(1, e.head).narrow(1, e.piece.source_row, e.piece.rows) +=
            buffer.select(0, 0).narrow(1, row, e.piece.rows);
        grad_v.select(1, e.head).narrow(1, e.piece.source_row, e.piece.rows) +=
            buffer.select(0, 1).narrow(1, row, e.piece.rows);
        row += e.piece.rows;
      }
    }
    b.received.clear();  // added (in stream order on a GPU): the buffers can go
    return {grad_k, grad_v, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<HaloPiece> halo_pieces(int receiver, int chunks, int64_t chunk, int64_t length, int64_t history_blocks) {
  std::vector<HaloPiece> pieces;
  const int64_t start = receiver * chunk - length, end = receiver * chunk;
  for (int64_t p = start; p < end;) {
    const int64_t g = floor_div(p, chunk);
    const int64_t piece_end = std::min(end, (g + 1) * chunk);
    const int64_t block = floor_div(g, chunks);
    const int64_t offset = p - g * chunk;
    if (block >= -history_blocks) {
      HaloPiece piece;
      piece.owner = static_cast<int>(g - block * chunks);
      piece.block = block;
      piece.source_row = block == 0 ? offset : (history_blocks + block) * chunk + offset;
      piece.halo_row = p - start;
      piece.rows = piece_end - p;
      pieces.push_back(piece);
    }
    p = piece_end;
  }
  return pieces;
}

// The messages of one exchange in flight: this rank's rows the others need, sent; theirs, posted
// to arrive in `arrived.received`.
struct HaloExchange::InFlight {
  explicit InFlight(const ContextParallel& cp) : messages(cp) {}
  Messages messages;
  Arrived arrived;
};

HaloExchange::HaloExchange(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& history_keys,
                           const at::Tensor& history_values, const std::vector<int64_t>& windows,
                           const ContextParallel& cp)
    : keys_(keys),
      values_(values),
      history_keys_(history_keys),
      history_values_(history_values),
      windows_(windows),
      cp_(cp),
      in_flight_(std::make_unique<InFlight>(cp)) {
  const int64_t chunk = keys.size(2), history_blocks = history_keys.size(2) / chunk;
  lengths_ = halo_lengths(windows, cp.rank, cp.size, chunk, history_blocks);
  const Plan& plan = in_flight_->arrived.plan = make_plan(windows, cp.rank, cp.size, chunk, history_blocks);
  at::NoGradGuard no_grad;  // the messages carry values; HaloFunction connects them to autograd
  for (const auto& [peer, entries] : plan.from) {
    const int64_t rows = rows_of(entries, false);
    if (rows > 0) {
      in_flight_->arrived.received[peer] =
          in_flight_->messages.receive(at::empty({2, keys.size(0), rows, keys.size(3)}, keys.options()), peer);
    }
  }
  for (const auto& [peer, entries] : plan.to) {
    std::vector<at::Tensor> k, v;
    for (const Entry& e : entries) {
      k.push_back(source_rows(e, keys.detach(), history_keys));
      v.push_back(source_rows(e, values.detach(), history_values));
    }
    if (!k.empty()) in_flight_->messages.send(at::stack({at::cat(k, 1), at::cat(v, 1)}).contiguous(), peer);
  }
  in_flight_->messages.post();
}

HaloExchange::~HaloExchange() = default;

void HaloExchange::poll() { in_flight_->messages.poll(); }

Halo HaloExchange::finish() {
  in_flight_->messages.wait();
  const int64_t cp_handle = static_cast<int64_t>(reinterpret_cast<intptr_t>(&cp_));
  const int64_t arrived_handle = static_cast<int64_t>(reinterpret_cast<intptr_t>(&in_flight_->arrived));
  const int64_t chunk = keys_.size(2), history_blocks = history_keys_.size(2) / chunk;
  const auto backward = c10::make_intrusive<BackwardMessages>(cp_);
  const torch::autograd::variable_list own =
      HaloOwner::apply(keys_, values_, windows_, history_blocks, cp_handle, backward);
  const torch::autograd::variable_list out = HaloFunction::apply(keys_, values_, history_keys_, history_values_,
                                                                 windows_, cp_handle, arrived_handle, backward);
  return {own[0], own[1], out[0], out[1], lengths_};
}

}  // namespace adaspan::model
