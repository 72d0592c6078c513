// adaspan inspect F [--json]: what a checkpoint holds, read with no model built.
#include "checkpointing/checkpoint_file.h"
#include "checkpointing/hdf5_file.h"
#include "launcher/command_line.h"
#include "launcher/inference_commands.h"
#include "trainer/checkpoint_model.h"
#include "trainer/train_option_table.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>

namespace adaspan::launcher {
namespace {

struct DatasetSizes {
  int64_t count = 0, elements = 0;
};

// Every dataset under `group` (recursively); with `verify`, each is read (checksums checked).
DatasetSizes walk(const checkpointing::Hdf5File& f, const std::string& group, bool verify) {
  DatasetSizes sizes;
  for (const auto& name : f.list(group)) {
    const std::string path = group + "/" + name;
    std::vector<int64_t> shape;
    try {
      shape = f.shape(path);
    } catch (const std::runtime_error&) {  // a group
      const DatasetSizes inner = walk(f, path, verify);
      sizes.count += inner.count;
      sizes.elements += inner.elements;
      continue;
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (verify) f.read_native(path);
    ++sizes.count;
    sizes.elements += n;
  }
  return sizes;
}

struct InspectConfig {
  std::string file;
  bool json = false, no_verify = false;
};

const trainer::OptionTable<InspectConfig>& inspect_options() {
  using trainer::value;
  static const trainer::OptionTable<InspectConfig> table = {
      value<InspectConfig>("file", FIELD(file), "The checkpoint file.").check([](const InspectConfig& c) {
        if (c.file.empty()) throw std::invalid_argument("name a checkpoint file");
      }),
      value<InspectConfig>("json", FIELD(json), "Print one JSON object."),
      value<InspectConfig>("no-verify", FIELD(no_verify),
                           "Skip reading every dataset to verify its checksum and that the model is complete."),
  };
  return table;
}

// "layers 4, d-model 128, ..., cache kv": the stored model options, as the option table names them.
std::string model_line(const nlohmann::json& stored) {
  trainer::TrainConfig config;
  trainer::load_stored(trainer::train_option_table(), stored, config, "model");
  std::string line;
  for (const auto& o : trainer::train_option_table()) {
    if (o.section != "model" || !o.flag_on_command_line || o.text(config).empty()) continue;
    line += (line.empty() ? "" : ", ") + o.name + " " + o.text(config);
  }
  return line;
}

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
  int exit_code = 0;
  const CommandLine line{
      "inspect", "adaspan inspect FILE: a checkpoint's config, step, spans and sizes", {}, false, {"file"}};
  const std::optional<InspectConfig> options = parse_or_exit(line, inspect_options(), args, exit_code);
  if (!options) return exit_code;
  const std::string& path = options->file;
  const bool json = options->json, no_verify = options->no_verify;
  try {
    const checkpointing::TrainingState header = checkpointing::read_checkpoint_header(path);
    const checkpointing::Hdf5File f(path, checkpointing::Hdf5File::Mode::read);
    const DatasetSizes params = walk(f, "model", !no_verify);
    const DatasetSizes optimizer = f.exists("optimizer") ? walk(f, "optimizer", !no_verify) : DatasetSizes{};
    const DatasetSizes cache = f.exists("cache") ? walk(f, "cache", !no_verify) : DatasetSizes{};
    if (!no_verify) {
      if (f.exists("data")) walk(f, "data", true);  // absent in imported checkpoints
      f.read_native("spans");
      trainer::load_checkpoint_model(path, at::kCPU);  // every parameter of the stored shape is there
    }
    const nlohmann::json config = nlohmann::json::parse(header.config_json);
    const nlohmann::json report = {{"file", path},
                                   {"format_version", f.read_int_attribute("format_version")},
                                   {"step", header.step},
                                   {"run_id", header.run_id},
                                   {"tokens_seen", header.tokens_seen},
                                   {"writer_ranks", f.read_int_attribute("writer_ranks")},
                                   {"optimizer", header.optimizer},
                                   {"parameters", params.elements},
                                   {"optimizer_state_elements", optimizer.elements},
                                   {"cache_elements", cache.elements},
                                   {"datasets", params.count + optimizer.count + cache.count},
                                   {"file_bytes", static_cast<int64_t>(std::filesystem::file_size(path))},
                                   {"checksums", no_verify ? "not verified" : "ok"},
                                   {"spans", header.spans},
                                   {"config", config}};
    if (json) {
      std::cout << report.dump(2) << "\n";
      return 0;
    }
    std::printf("%s: adaspan checkpoint, format %lld\n", path.c_str(),
                static_cast<long long>(report["format_version"]));
    std::printf("  step %lld, %lld tokens seen, written by %lld ranks\n", static_cast<long long>(header.step),
                static_cast<long long>(header.tokens_seen), static_cast<long long>(report["writer_ranks"]));
    std::printf("  model: %s\n", model_line(config).c_str());
    std::printf("  %lld parameters, %s state %lld values, cache %lld values, file %.2f MB, checksums %s\n",
                static_cast<long long>(params.elements), header.optimizer.c_str(),
                static_cast<long long>(optimizer.elements), static_cast<long long>(cache.elements),
                static_cast<double>(report["file_bytes"].get<int64_t>()) / 1e6,
                report["checksums"].get<std::string>().c_str());
    std::printf("  learned spans (bytes):\n");
    for (size_t l = 0; l < header.spans.size(); ++l) {
      std::printf("    layer %zu:", l);
      for (double z : header.spans[l]) std::printf(" %7.1f", z);
      std::printf("\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan inspect: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace adaspan::launcher
