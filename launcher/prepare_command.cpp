#include "launcher/prepare_command.h"

#include "data/builtin_prepare.h"
#include "data/enwik8_prepare.h"

#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <stdexcept>

namespace adaspan::launcher {

namespace po = boost::program_options;

int run_prepare(const std::vector<std::string>& args) {
  std::string dataset, zip_path, out_dir;
  data::SplitSizes sizes;
  po::options_description options(
      "adaspan prepare DATASET --out DIR: write a standard corpus as byte files\n"
      "  enwik8   split enwik8.zip (--zip) into train.txt / valid.txt / test.txt (raw bytes)\n"
      "  builtin  the built-in corpus (what train reads without --data) as train.txt / valid.txt, and\n"
      "           train.mask / valid.mask marking the value bytes of each <use K=V>, which only a look\n"
      "           back to its <def K=V> predicts (for adaspan eval --focus)\n\nOptions");
  options.add_options()
      ("help,h", "Show this help and exit.")
      ("zip", po::value(&zip_path), "enwik8: enwik8.zip as distributed (http://mattmahoney.net/dc/enwik8.zip).")
      ("out", po::value(&out_dir), "Output directory (created).")
      ("valid-bytes", po::value(&sizes.valid)->default_value(sizes.valid), "enwik8: bytes of the validation split.")
      ("test-bytes", po::value(&sizes.test)->default_value(sizes.test),
       "enwik8: bytes of the test split (the last ones); train is everything before valid.");
  po::options_description hidden;
  hidden.add_options()("dataset", po::value(&dataset));
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("dataset", 1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "adaspan prepare: error: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (dataset != "enwik8" && dataset != "builtin") {
    std::fprintf(stderr, "adaspan prepare: error: unknown dataset '%s' (supported: enwik8, builtin)\n",
                 dataset.c_str());
    return 2;
  }
  if (dataset == "builtin" && (vm.count("zip") || !vm["valid-bytes"].defaulted() || !vm["test-bytes"].defaulted())) {
    std::fprintf(stderr, "adaspan prepare: error: --zip, --valid-bytes and --test-bytes are enwik8's; the built-in "
                         "corpus has fixed sizes\n");
    return 2;
  }
  if (out_dir.empty() || (dataset == "enwik8" && zip_path.empty())) {
    std::fprintf(stderr, "adaspan prepare: error: %s\n",
                 dataset == "enwik8" ? "--zip and --out are required" : "--out is required");
    return 2;
  }
  try {
    if (dataset == "builtin") {
      const data::PreparedBuiltin b = data::prepare_builtin(out_dir);
      std::printf("wrote %s/train.txt (%llu bytes, %llu recalls), valid.txt (%llu, %llu) and their .mask files\n",
                  out_dir.c_str(), static_cast<unsigned long long>(b.train),
                  static_cast<unsigned long long>(b.train_recalls), static_cast<unsigned long long>(b.valid),
                  static_cast<unsigned long long>(b.valid_recalls));
      return 0;
    }
    const data::PreparedSplit split = data::prepare_enwik8(zip_path, out_dir, sizes);
    std::printf("wrote %s/train.txt (%llu bytes), valid.txt (%llu), test.txt (%llu)\n", out_dir.c_str(),
                static_cast<unsigned long long>(split.train), static_cast<unsigned long long>(split.valid),
                static_cast<unsigned long long>(split.test));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan prepare: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace adaspan::launcher
