#include "checkpointing/checkpoint_file.h"

#include "checkpointing/hdf5_file.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace adaspan::checkpointing {
namespace {

at::Tensor matrix_of(const std::vector<std::vector<double>>& rows) {
  const int64_t cols = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
  at::Tensor out = at::empty({static_cast<int64_t>(rows.size()), cols}, at::kDouble);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int64_t c = 0; c < cols; ++c) out[static_cast<int64_t>(r)][c] = rows[r][static_cast<size_t>(c)];
  }
  return out;
}

template <typename T>
std::vector<std::vector<T>> rows_of(const at::Tensor& matrix) {
  const at::Tensor m = matrix.to(std::is_same_v<T, double> ? at::kDouble : at::kLong).contiguous();
  std::vector<std::vector<T>> out(static_cast<size_t>(m.size(0)));
  for (int64_t r = 0; r < m.size(0); ++r) {
    const T* row = m.data_ptr<T>() + r * m.size(1);
    out[static_cast<size_t>(r)].assign(row, row + m.size(1));
  }
  return out;
}

void write_header(Hdf5File& f, const TrainingState& s, int writer_ranks, int64_t global_streams) {
  f.write_attribute("format", std::string("adaspan checkpoint"));
  f.write_attribute("format_version", kFormatVersion);
  f.write_attribute("step", s.step);
  f.write_attribute("tokens_seen", s.tokens_seen);
  f.write_attribute("halved_lr_until", s.halved_lr_until);
  f.write_attribute("run_id", s.run_id);
  f.write_attribute("adopts_unnamed", static_cast<int64_t>(s.adopts_unnamed));
  f.write_attribute("config", s.config_json);
  f.write_attribute("optimizer", s.optimizer);
  f.write_attribute("optimizer_steps", s.optimizer_steps);
  f.write_attribute("writer_ranks", static_cast<int64_t>(writer_ranks));
  f.write_attribute("global_streams", global_streams);
}

TrainingState read_header(const Hdf5File& f) {
  if (!f.has_attribute("format_version") || !f.has_attribute("complete")) {
    throw std::runtime_error("'" + f.path() + "' is not a complete adaspan checkpoint");
  }
  const int64_t version = f.read_int_attribute("format_version");
  if (version > kFormatVersion) {
    throw std::runtime_error("'" + f.path() + "' has checkpoint format " + std::to_string(version) +
                             "; this adaspan reads up to " + std::to_string(kFormatVersion) + " (upgrade adaspan)");
  }
  TrainingState s;
  s.step = f.read_int_attribute("step");
  s.tokens_seen = f.read_int_attribute("tokens_seen");
  // Added after format 1's first files: absent means no rollback in progress.
  s.halved_lr_until = f.has_attribute("halved_lr_until") ? f.read_int_attribute("halved_lr_until") : 0;
  s.run_id = f.has_attribute("run_id") ? f.read_string_attribute("run_id") : "";
  s.adopts_unnamed = f.has_attribute("adopts_unnamed") && f.read_int_attribute("adopts_unnamed") != 0;
  s.config_json = f.read_string_attribute("config");
  s.optimizer = f.read_string_attribute("optimizer");
  s.optimizer_steps = f.read_int_attribute("optimizer_steps");
  s.spans = rows_of<double>(f.read_native("spans"));
  s.placement = rows_of<int64_t>(f.read_native("placement"));
  return s;
}

}  // namespace

void write_checkpoint(const std::string& path, const TrainingState& s, const WriterLayout& layout) {
  std::optional<Hdf5File> file;
  if (!layout.comm.valid()) {
    file.emplace(path, Hdf5File::Mode::create_new);
  } else {
    file.emplace(path, layout.comm);
  }
  Hdf5File& f = *file;
  write_header(f, s, f.ranks(), layout.global_streams);
  // Every rank creates every dataset in the same order (collective), writing its part.
  const auto write_all = [&](const std::string& group, std::vector<NamedTensor> tensors) {
    std::sort(tensors.begin(), tensors.end(),
              [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
    for (const auto& t : tensors) {
      if (t.pieces.dim < 0) {
        f.write_replicated(group + t.name, t.tensor);
      } else {
        f.write_pieces(group + t.name, t.pieces.full_shape, t.tensor.defined() ? t.tensor.scalar_type() : at::kFloat,
                       t.pieces.dim, t.pieces.extent, t.pieces.offsets, t.tensor);
      }
    }
  };
  write_all("model/", s.parameters);
  write_all("optimizer/", s.optimizer_state);
  f.write_replicated("data/stream_positions", at::tensor(s.stream_positions, at::kLong));
  f.write_replicated("spans", matrix_of(s.spans));
  std::vector<std::vector<double>> placement;
  for (const auto& layer : s.placement) placement.emplace_back(layer.begin(), layer.end());
  f.write_replicated("placement", matrix_of(placement).to(at::kLong));
  write_all("cache/", s.cache);
  const auto write_rng = [&](const std::string& name, const at::Tensor& state) {
    if (!state.defined()) return;
    f.write_shared_rows(name, {f.ranks(), state.numel()}, state.to(at::kByte).reshape({1, -1}));
  };
  if (s.metrics_window.defined()) {
    f.write_shared_rows("metrics/window", {f.ranks(), 2}, s.metrics_window.to(at::kDouble).reshape({1, 2}));
  }
  write_rng("rng/cpu", s.rng_cpu);
  write_rng("rng/cuda", s.rng_cuda);
  // Last: a file without it was never finished.
  f.write_attribute("complete", int64_t{1});
  f.flush();
  f.close();
}

TrainingState read_checkpoint_header(const std::string& path) {
  const Hdf5File f(path, Hdf5File::Mode::read);
  return read_header(f);
}

std::vector<NamedTensor> read_parameters(const std::string& path) {
  const Hdf5File f(path, Hdf5File::Mode::read);
  read_header(f);
  std::vector<NamedTensor> out;
  for (const auto& name : f.list("model")) out.push_back({name, f.read_native("model/" + name)});
  return out;
}

TrainingState read_checkpoint(const std::string& path, const ReaderLayout& layout) {
  const Hdf5File f(path, Hdf5File::Mode::read);
  TrainingState s = read_header(f);
  for (const auto& name : f.list("model")) s.parameters.push_back({name, f.read_native("model/" + name)});
  if (f.exists("optimizer")) {
    for (const auto& slot : f.list("optimizer")) {
      for (const auto& name : f.list("optimizer/" + slot)) {
        s.optimizer_state.push_back({slot + "/" + name, f.read_native("optimizer/" + slot + "/" + name)});
      }
    }
  }
  // Absent in a checkpoint imported from the reference (which never stores data positions): the
  // streams start at their beginnings, as the reference's do on a resume.
  if (f.exists("data/stream_positions")) {
    const at::Tensor positions = f.read_native("data/stream_positions").contiguous();
    s.stream_positions.assign(positions.data_ptr<int64_t>(), positions.data_ptr<int64_t>() + positions.numel());
  }
  const int64_t streams = s.stream_positions.empty() ? f.read_int_attribute("global_streams")
                                                     : static_cast<int64_t>(s.stream_positions.size());
  if (layout.first_stream + layout.local_streams > streams) {
    throw std::runtime_error("'" + path + "' holds " + std::to_string(streams) +
                             " streams; this rank reads streams up to " +
                             std::to_string(layout.first_stream + layout.local_streams));
  }
  if (f.exists("cache")) {
    for (const auto& layer : f.list("cache")) {
      for (const auto& name : f.list("cache/" + layer)) {
        s.cache.push_back({layer + "/" + name,
                           f.read_rows("cache/" + layer + "/" + name, layout.first_stream, layout.local_streams)});
      }
    }
  }
  if (f.exists("metrics/window")) s.metrics_window = f.read_native("metrics/window");
  if (f.read_int_attribute("writer_ranks") == layout.ranks) {
    if (f.exists("rng/cpu")) s.rng_cpu = f.read_rows("rng/cpu", layout.rank, 1).reshape({-1});
    if (f.exists("rng/cuda")) s.rng_cuda = f.read_rows("rng/cuda", layout.rank, 1).reshape({-1});
  }
  return s;
}

}  // namespace adaspan::checkpointing
