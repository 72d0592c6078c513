#include "model/cache_rows.h"

#include <ATen/ATen.h>

#include <stdexcept>

namespace adaspan::model {
namespace {

at::Tensor cat_defined(const std::vector<at::Tensor>& parts) {
  for (const auto& t : parts) {
    if (!t.defined()) return {};  // all or none: the caches of one step have the same shapes
  }
  return parts.empty() ? at::Tensor() : at::cat(parts, 0);
}

}  // namespace

ModelCache concat_rows(const std::vector<ModelCache>& parts) {
  if (parts.size() == 1) return parts[0];
  ModelCache out;
  size_t layers = 0;
  for (const auto& p : parts) layers = std::max(layers, p.size());
  for (size_t l = 0; l < layers; ++l) {
    LayerCache layer;
    std::vector<at::Tensor> hidden;
    size_t heads = 0;
    for (const auto& p : parts) {
      hidden.push_back(l < p.size() ? p[l].hidden : at::Tensor());
      if (l < p.size()) heads = std::max(heads, p[l].keys.size());
    }
    layer.hidden = cat_defined(hidden);
    layer.stream_position = l < parts[0].size() ? parts[0][l].stream_position : 0;
    for (size_t h = 0; h < heads; ++h) {
      std::vector<at::Tensor> keys, values;
      for (const auto& p : parts) {
        const bool has = l < p.size() && h < p[l].keys.size();
        keys.push_back(has ? p[l].keys[h] : at::Tensor());
        values.push_back(has ? p[l].values[h] : at::Tensor());
      }
      const at::Tensor k = cat_defined(keys), v = cat_defined(values);
      if (!k.defined() || !v.defined()) throw std::logic_error("concat_rows: micro-batch caches of different kinds");
      layer.keys.push_back(k);
      layer.values.push_back(v);
    }
    out.push_back(std::move(layer));
  }
  return out;
}

std::vector<ModelCache> split_rows(const ModelCache& cache, int64_t parts) {
  std::vector<ModelCache> out(static_cast<size_t>(parts));
  if (parts == 1) {
    out[0] = cache;
    return out;
  }
  const auto chunk = [&](const at::Tensor& t, int64_t k) {
    if (!t.defined()) return at::Tensor();
    if (t.size(0) % parts != 0) throw std::invalid_argument("split_rows: rows do not divide by parts");
    const int64_t rows = t.size(0) / parts;
    return t.narrow(0, k * rows, rows).contiguous();
  };
  for (int64_t k = 0; k < parts; ++k) {
    for (const auto& layer : cache) {
      LayerCache piece;
      piece.hidden = chunk(layer.hidden, k);
      piece.stream_position = layer.stream_position;
      for (const auto& key : layer.keys) piece.keys.push_back(chunk(key, k));
      for (const auto& value : layer.values) piece.values.push_back(chunk(value, k));
      out[static_cast<size_t>(k)].push_back(std::move(piece));
    }
  }
  return out;
}

}  // namespace adaspan::model
