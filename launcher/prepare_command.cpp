#include "launcher/prepare_command.h"

#include "data/builtin_prepare.h"
#include "data/enwik8_prepare.h"
#include "launcher/command_line.h"

#include <cstdio>
#include <stdexcept>

namespace adaspan::launcher {
namespace {

struct PrepareConfig {
  std::string dataset, zip, out;
  data::SplitSizes sizes;
};

const trainer::OptionTable<PrepareConfig>& prepare_options() {
  using trainer::value;
  static const trainer::OptionTable<PrepareConfig> table = {
      value<PrepareConfig>("dataset", FIELD(dataset), "enwik8 or builtin.").check([](const PrepareConfig& c) {
        if (c.dataset != "enwik8" && c.dataset != "builtin") {
          throw std::invalid_argument("unknown dataset '" + c.dataset + "' (supported: enwik8, builtin)");
        }
      }),
      value<PrepareConfig>("zip", FIELD(zip),
                           "enwik8: enwik8.zip as distributed (http://mattmahoney.net/dc/enwik8.zip)."),
      value<PrepareConfig>("out", FIELD(out), "Output directory (created).").check([](const PrepareConfig& c) {
        if (c.out.empty() || (c.dataset == "enwik8" && c.zip.empty())) {
          throw std::invalid_argument(c.dataset == "enwik8" ? "--zip and --out are required" : "--out is required");
        }
      }),
      value<PrepareConfig>("valid-bytes", FIELD(sizes.valid), "enwik8: bytes of the validation split."),
      value<PrepareConfig>("test-bytes", FIELD(sizes.test),
                           "enwik8: bytes of the test split (the last ones); train is everything before valid."),
  };
  return table;
}

const char* kSummary =
    "adaspan prepare DATASET --out DIR: write a standard corpus as byte files\n"
    "  enwik8   split enwik8.zip (--zip) into train.txt / valid.txt / test.txt (raw bytes)\n"
    "  builtin  the built-in corpus (what train reads without --data) as train.txt / valid.txt, and\n"
    "           train.mask / valid.mask marking the value bytes of each <use K=V>, which only a look\n"
    "           back to its <def K=V> predicts (for adaspan eval --focus)";

void write_builtin(const std::string& out_dir) {
  const data::PreparedBuiltin b = data::prepare_builtin(out_dir);
  std::printf("wrote %s/train.txt (%llu bytes, %llu recalls), valid.txt (%llu, %llu) and their .mask files\n",
              out_dir.c_str(), static_cast<unsigned long long>(b.train),
              static_cast<unsigned long long>(b.train_recalls), static_cast<unsigned long long>(b.valid),
              static_cast<unsigned long long>(b.valid_recalls));
}

void write_enwik8(const PrepareConfig& c) {
  const data::PreparedSplit split = data::prepare_enwik8(c.zip, c.out, c.sizes);
  std::printf("wrote %s/train.txt (%llu bytes), valid.txt (%llu), test.txt (%llu)\n", c.out.c_str(),
              static_cast<unsigned long long>(split.train), static_cast<unsigned long long>(split.valid),
              static_cast<unsigned long long>(split.test));
}

}  // namespace

int run_prepare(const std::vector<std::string>& args) {
  const CommandLine line{"prepare", kSummary, {}, false, {"dataset"}};
  ParsedCommand<PrepareConfig> parsed = parse_command(line, prepare_options(), args);
  if (parsed.error.empty() && parsed.config.dataset == "builtin" &&
      (parsed.given.count("zip") || parsed.given.count("valid-bytes") || parsed.given.count("test-bytes"))) {
    parsed.error = "--zip, --valid-bytes and --test-bytes are enwik8's; the built-in corpus has fixed sizes";
  }
  int exit_code = 0;
  const std::optional<PrepareConfig> c = exit_on_help_or_error(line, parsed, exit_code);
  if (!c) return exit_code;
  try {
    if (c->dataset == "builtin") {
      write_builtin(c->out);
    } else {
      write_enwik8(*c);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan prepare: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace adaspan::launcher
