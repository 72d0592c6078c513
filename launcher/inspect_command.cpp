// adaspan inspect F [--json]: what a checkpoint holds, read with no model built.
#include "checkpointing/checkpoint_file.h"
#include "checkpointing/hdf5_file.h"
#include "launcher/inference_commands.h"

#include <ATen/ATen.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>

namespace adaspan::launcher {
namespace {

namespace po = boost::program_options;

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

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
  std::string path;
  bool json = false, no_verify = false;
  po::options_description options("adaspan inspect FILE: a checkpoint's config, step, spans and sizes\n\nOptions");
  options.add_options()
      ("help,h", "Show this help and exit.")
      ("json", po::bool_switch(&json), "Print one JSON object.")
      ("no-verify", po::bool_switch(&no_verify), "Skip reading every dataset to verify its checksum.");
  po::options_description hidden;
  hidden.add_options()("file", po::value(&path));
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("file", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "adaspan inspect: error: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (path.empty()) {
    std::fprintf(stderr, "adaspan inspect: error: name a checkpoint file\n");
    return 2;
  }
  try {
    const checkpointing::TrainingState header = checkpointing::read_checkpoint_header(path);
    const checkpointing::Hdf5File f(path, checkpointing::Hdf5File::Mode::read);
    const DatasetSizes params = walk(f, "model", !no_verify);
    const DatasetSizes optimizer = f.exists("optimizer") ? walk(f, "optimizer", !no_verify) : DatasetSizes{};
    const DatasetSizes cache = f.exists("cache") ? walk(f, "cache", !no_verify) : DatasetSizes{};
    if (!no_verify) {
      walk(f, "data", true);
      f.read_native("spans");
    }
    const nlohmann::json config = nlohmann::json::parse(header.config_json);
    const nlohmann::json report = {
        {"file", path},
        {"format_version", f.read_int_attribute("format_version")},
        {"step", header.step},
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
    std::printf("%s: adaspan checkpoint, format %lld\n", path.c_str(), static_cast<long long>(report["format_version"]));
    std::printf("  step %lld, %lld tokens seen, written by %lld ranks\n", static_cast<long long>(header.step),
                static_cast<long long>(header.tokens_seen), static_cast<long long>(report["writer_ranks"]));
    const auto& m = config["model"];
    std::printf("  model: %s layers, d-model %s, %s heads, ff-size %s, attn-span %s, cache %s\n",
                m["layers"].dump().c_str(), m["d-model"].dump().c_str(), m["heads"].dump().c_str(),
                m["ff-size"].dump().c_str(), m["attn-span"].dump().c_str(), m["cache"].get<std::string>().c_str());
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
