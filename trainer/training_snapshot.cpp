#include "trainer/training_snapshot.h"

#include "model/cache_rows.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

std::string layer_prefix(size_t layer) { return "layer." + std::to_string(layer) + "/"; }

// "layer.3/keys.12" -> {3, "keys", 12}; "layer.0/hidden" -> {0, "hidden", -1}
struct CacheName {
  size_t layer;
  std::string kind;
  int64_t head;
};
CacheName parse_cache_name(const std::string& name) {
  const size_t slash = name.find('/');
  const size_t dot = name.find('.', slash);
  if (name.rfind("layer.", 0) != 0 || slash == std::string::npos)
    throw std::runtime_error("unknown cache entry '" + name + "'");
  CacheName out{std::stoul(name.substr(6, slash - 6)), name.substr(slash + 1), -1};
  if (dot != std::string::npos) {
    out.kind = name.substr(slash + 1, dot - slash - 1);
    out.head = std::stoll(name.substr(dot + 1));
  }
  return out;
}

at::Generator default_generator(const at::Device& device) { return at::globalContext().defaultGenerator(device); }

at::Tensor generator_state(const at::Device& device) {
  at::Generator gen = default_generator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(const at::Device& device, const at::Tensor& state) {
  at::Generator gen = default_generator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state.to(at::kByte).contiguous());
}

// How this rank's slice of a parameter lies in the whole tensor (no pieces: every rank holds it whole).
checkpointing::Pieces pieces_of(const LiveTraining& live, const std::string& name, const at::Tensor& local) {
  const model::TensorParallel& tp = live.model.tensor_parallel();
  checkpointing::Pieces p;
  if (!tp.active() || !model::AdaptiveSpanLM::is_sharded(name)) return p;
  p.full_shape = local.sizes().vec();
  const model::HeadSplit split = model::head_split_of(name, live.model.config().head_dim());
  if (split.dim >= 0) {
    p.dim = split.dim;
    p.extent = split.per_head;
    p.full_shape[static_cast<size_t>(p.dim)] = live.model.config().heads * split.per_head;
    const std::vector<std::vector<int64_t>> heads = live.model.heads();
    for (int64_t h : heads[static_cast<size_t>(model::AdaptiveSpanLM::layer_of(name))])
      p.offsets.push_back(h * split.per_head);
  } else {
    p.dim = name.find(".ff.fc2.weight") != std::string::npos ? 1 : 0;
    p.extent = local.size(p.dim);
    p.full_shape[static_cast<size_t>(p.dim)] = p.extent * tp.size;
    p.offsets.push_back(tp.rank * p.extent);
  }
  if (live.dp_rank != 0) p.offsets.clear();  // one replica writes them
  return p;
}

// [layer][head] -> cache rows, for every head of the model (tensor-parallel ranks hold some each).
std::vector<std::vector<double>> cache_rows_of_all_heads(const LiveTraining& live, const model::ModelCache& stacked) {
  const auto heads = live.model.heads();
  std::vector<double> mine;  // (layer, head, rows) triples
  for (size_t l = 0; l < stacked.size(); ++l) {
    for (size_t i = 0; i < stacked[l].keys.size(); ++i) {
      mine.insert(mine.end(), {static_cast<double>(l), static_cast<double>(heads[l][i]),
                               static_cast<double>(stacked[l].keys[i].size(1))});
    }
  }
  return model::gather_by_head(mine, live.model.tensor_parallel(), stacked.size(), live.model.config().heads);
}

}  // namespace

checkpointing::TrainingState capture_state(const LiveTraining& live, int64_t step, int64_t tokens_seen,
                                           const std::string& config_json) {
  checkpointing::TrainingState s;
  s.step = step;
  s.tokens_seen = tokens_seen;
  s.halved_lr_until = live.progress.halved_lr_until;
  s.config_json = config_json;
  const auto named = live.model.named_parameters();
  std::vector<std::string> names;
  for (const auto& p : named) {
    names.push_back(p.key());
    s.parameters.push_back({p.key(), p.value().detach(), pieces_of(live, p.key(), p.value())});
  }
  s.optimizer = live.optimizer.name();
  s.optimizer_steps = live.optimizer.steps_taken();
  for (const auto& slot : live.optimizer.slots()) {
    const std::vector<at::Tensor> tensors = live.optimizer.export_slot(slot);  // collective when sharded
    for (size_t i = 0; i < tensors.size(); ++i) {
      s.optimizer_state.push_back({slot + "/" + names[i], tensors[i], pieces_of(live, names[i], tensors[i])});
    }
  }
  for (uint64_t p : live.sampler.positions()) s.stream_positions.push_back(static_cast<int64_t>(p));
  // Caches: rows of this rank's streams, pieces along dim 0 of [B, ...]; every rank lists every
  // head's datasets (the write is collective) and writes the rows of its own heads.
  const model::ModelCache stacked = model::concat_rows(live.caches);
  const int64_t streams = static_cast<int64_t>(live.sampler.positions().size());
  const auto rows_piece = [&](const at::Tensor& t, bool mine) {
    checkpointing::Pieces p;
    p.dim = 0;
    p.extent = live.sampler.local_streams();
    p.full_shape = t.sizes().vec();
    p.full_shape[0] = streams;
    if (mine) p.offsets.push_back(live.sampler.first_stream());
    return p;
  };
  const auto heads = live.model.heads();
  const bool any_kv =
      std::any_of(stacked.begin(), stacked.end(), [](const model::LayerCache& c) { return !c.keys.empty(); });
  const auto all_rows = any_kv ? cache_rows_of_all_heads(live, stacked) : std::vector<std::vector<double>>{};
  for (size_t l = 0; l < stacked.size(); ++l) {
    const model::LayerCache& c = stacked[l];
    if (c.hidden.defined())
      s.cache.push_back({layer_prefix(l) + "hidden", c.hidden, rows_piece(c.hidden, live.writes_cache)});
    if (c.keys.empty()) continue;
    for (int64_t h = 0; h < live.model.config().heads; ++h) {
      const auto& held = heads[l];
      const auto at = std::find(held.begin(), held.end(), h);
      const bool mine = at != held.end();
      at::Tensor keys, values;
      checkpointing::Pieces shape_only;
      if (mine) {
        keys = c.keys[static_cast<size_t>(at - held.begin())];
        values = c.values[static_cast<size_t>(at - held.begin())];
      } else {
        shape_only.dim = 0;
        shape_only.extent = live.sampler.local_streams();
        shape_only.full_shape = {streams, static_cast<int64_t>(all_rows[l][static_cast<size_t>(h)]),
                                 live.model.config().head_dim()};
      }
      const std::string suffix = "." + std::to_string(h);
      s.cache.push_back(
          {layer_prefix(l) + "keys" + suffix, keys, mine ? rows_piece(keys, live.writes_cache) : shape_only});
      s.cache.push_back(
          {layer_prefix(l) + "values" + suffix, values, mine ? rows_piece(values, live.writes_cache) : shape_only});
    }
  }
  s.metrics_window = at::tensor(
      std::vector<double>{live.progress.window.nll, static_cast<double>(live.progress.window.steps)}, at::kDouble);
  s.rng_cpu = generator_state(at::kCPU);
  const at::Device device = named.size() ? named[0].value().device() : at::Device(at::kCPU);
  if (device.is_cuda()) s.rng_cuda = generator_state(device);
  s.spans = live.model.all_spans();
  s.placement = live.model.placement();
  return s;
}

namespace {

// This rank's part of every parameter and optimizer slot in `s` ("model/NAME",
// "optimizer/SLOT/NAME"), checked against the live shapes; throws naming the first that is missing
// or does not fit. Whole tensors in the file; with tensor parallelism this rank keeps its part.
std::map<std::string, at::Tensor> local_tensors(const checkpointing::TrainingState& s, const LiveTraining& live) {
  std::map<std::string, std::pair<std::string, at::Tensor>> stored;  // key -> (parameter name, whole)
  for (const auto& t : s.parameters) stored["model/" + t.name] = {t.name, t.tensor};
  for (const auto& t : s.optimizer_state)
    stored["optimizer/" + t.name] = {t.name.substr(t.name.find('/') + 1), t.tensor};
  std::map<std::string, at::Tensor> local;
  const auto find = [&](const std::string& key, const at::Tensor& like) {
    auto it = stored.find(key);
    if (it == stored.end()) throw std::runtime_error("the checkpoint has no dataset '" + key + "'");
    at::Tensor part;
    try {
      part = live.model.local_part(it->second.first, it->second.second);
    } catch (const std::exception&) {
      part = at::Tensor();
    }
    if (!part.defined() || part.sizes() != like.sizes()) {
      throw std::runtime_error("dataset '" + key + "' has shape " + c10::str(it->second.second.sizes()) +
                               ", which does not fit the model's " + c10::str(like.sizes()) + " on this layout");
    }
    local[key] = part;
  };
  const auto named = live.model.named_parameters();
  for (const auto& p : named) find("model/" + p.key(), p.value());
  if (s.optimizer != live.optimizer.name()) {
    throw std::runtime_error("the checkpoint's optimizer is " + s.optimizer + ", this run's " + live.optimizer.name());
  }
  for (const auto& slot : live.optimizer.slots()) {
    for (const auto& p : named) find("optimizer/" + slot + "/" + p.key(), p.value());  // shaped as the parameter
  }
  return local;
}

// The caches of this rank's heads, from the checkpoint's per-head entries; throws when an entry
// does not fit the model or a head lacks keys or values.
model::ModelCache rebuild_cache(const checkpointing::TrainingState& s, const LiveTraining& live,
                                const at::Device& device, at::ScalarType dtype) {
  const int64_t layers = static_cast<int64_t>(live.model.config().layers);
  const int64_t heads = live.model.config().heads;
  for (const auto& c : s.cache) {
    const CacheName n = parse_cache_name(c.name);
    if (static_cast<int64_t>(n.layer) >= layers || n.head >= heads) {
      throw std::runtime_error("cache entry '" + c.name + "' does not fit this model");
    }
  }
  model::ModelCache cache(static_cast<size_t>(layers));
  const std::vector<std::vector<int64_t>> held = live.model.heads();  // this rank's heads, per layer
  for (const auto& c : s.cache) {
    const CacheName n = parse_cache_name(c.name);
    model::LayerCache& layer = cache[n.layer];
    const at::Tensor t = c.tensor.to(device, dtype);
    if (n.kind == "hidden") {
      layer.hidden = t;
      continue;
    }
    std::vector<at::Tensor>& list = n.kind == "keys" ? layer.keys : layer.values;
    if (n.kind != "keys" && n.kind != "values") throw std::runtime_error("unknown cache entry '" + c.name + "'");
    const auto& mine = held[n.layer];
    const auto at = std::find(mine.begin(), mine.end(), n.head);
    if (at == mine.end()) continue;  // another tensor-parallel rank's head
    if (list.size() < mine.size()) list.resize(mine.size());
    list[static_cast<size_t>(at - mine.begin())] = t;
  }
  for (auto& layer : cache) {
    for (size_t h = 0; h < layer.keys.size(); ++h) {
      if (!layer.keys[h].defined() || h >= layer.values.size() || !layer.values[h].defined()) {
        throw std::runtime_error("the checkpoint's cache lacks keys or values of a head");
      }
    }
  }
  return cache;
}

// Each rank's own metrics window on the same layout; else the mean so far, carried by rank 0 (the
// logged value is sum over ranks / ranks).
MetricsWindow restored_window(const checkpointing::TrainingState& s, const LiveTraining& live) {
  MetricsWindow window;
  if (!s.metrics_window.defined() || s.metrics_window.dim() != 2 || s.metrics_window.size(1) != 2) return window;
  const at::Tensor w = s.metrics_window.to(at::kDouble).contiguous();
  const int64_t writers = w.size(0);
  if (writers == live.ranks) {
    window.nll = w[live.rank][0].item<double>();
    window.steps = static_cast<int64_t>(w[live.rank][1].item<double>());
  } else if (live.rank == 0) {
    window.nll = w.select(1, 0).sum().item<double>() / static_cast<double>(writers) * live.ranks;
    window.steps = static_cast<int64_t>(w[0][1].item<double>());
  }
  return window;
}

}  // namespace

void restore_state(const checkpointing::TrainingState& s, const LiveTraining& live) {
  // Check everything before changing anything.
  const std::map<std::string, at::Tensor> local = local_tensors(s, live);
  if (!s.stream_positions.empty() && s.stream_positions.size() != live.sampler.positions().size()) {
    throw std::runtime_error("the checkpoint has " + std::to_string(s.stream_positions.size()) + " streams, this run " +
                             std::to_string(live.sampler.positions().size()));
  }
  const auto named = live.model.named_parameters();
  const at::Device device = named.size() ? named[0].value().device() : at::Device(at::kCPU);
  const at::ScalarType dtype = named.size() ? named[0].value().scalar_type() : at::kFloat;
  model::ModelCache cache = rebuild_cache(s, live, device, dtype);

  // Apply.
  at::NoGradGuard no_grad;
  for (const auto& p : named) {
    at::Tensor param = p.value();
    param.copy_(local.at("model/" + p.key()));
  }
  for (const auto& slot : live.optimizer.slots()) {
    std::vector<at::Tensor> whole;
    for (const auto& p : named) whole.push_back(local.at("optimizer/" + slot + "/" + p.key()));
    live.optimizer.import_slot(slot, whole);
  }
  live.optimizer.set_steps_taken(s.optimizer_steps);
  if (!s.stream_positions.empty()) {  // else (imported): the streams start at their beginnings
    live.sampler.set_positions(std::vector<uint64_t>(s.stream_positions.begin(), s.stream_positions.end()));
  }
  live.caches = model::split_rows(cache, static_cast<int64_t>(live.caches.size()));
  live.progress.window = restored_window(s, live);
  live.progress.halved_lr_until = s.halved_lr_until;
  if (s.rng_cpu.defined()) set_generator_state(at::kCPU, s.rng_cpu);
  if (s.rng_cuda.defined() && device.is_cuda()) set_generator_state(device, s.rng_cuda);
}

}  // namespace adaspan::trainer
