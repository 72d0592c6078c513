// adaspan import reference CKPT.pt --out RUN_DIR and adaspan export reference CHECKPOINT --out
// model.pt: checkpoints of facebookresearch/adaptive-span in and out. The flags are checked here;
// the conversion is scripts/reference_checkpoint.py (torch reads and writes the reference's
// torch.save files), found like report's script; ADASPAN_REFERENCE_SCRIPT overrides it. Import is
// given this binary's default training config, so the checkpoint it writes has every key we read.
#include "launcher/command_line.h"
#include "launcher/inference_commands.h"
#include "launcher/python_script.h"
#include "trainer/config_json.h"
#include "trainer/train_config.h"

namespace adaspan::launcher {
namespace {

constexpr const char* kScriptVariable = "ADASPAN_REFERENCE_SCRIPT";

struct ImportConfig {
  std::string format;  // "reference", the only one
  std::string checkpoint;
  std::string out;
  std::string reference_data;
  int64_t batch_size = 64;  // the reference's --batch-sz default
  int64_t block_size = 64;  // its --block-sz
  double span_ramp = 32;    // its --adapt-span-ramp
  double span_loss_coeff = 0;
  double dropout = 0;
  int64_t warmup_steps = -1;  // -1: implied by the stored learning rates
  int64_t nbatches = 0;       // 0: the step is the optimizer's update count
  int64_t seed = 1;
  bool weights_only = false;
};

struct ExportConfig {
  std::string format;
  std::string checkpoint;
  std::string out;
  std::string reference_data;
  int64_t nbatches = 1000;  // the reference's --nbatches default
};

template <class Config>
trainer::Option<Config> format_option() {
  return trainer::value<Config>("format", FIELD(format),
                                "What the other side is: reference (facebookresearch/adaptive-span).")
      .check([](const Config& c) {
        if (c.format != "reference") {
          throw std::invalid_argument("unknown format '" + c.format + "' (reference)");
        }
      });
}

template <class Config>
trainer::Option<Config> required(trainer::Option<Config> option, std::string(Config::*field), const char* message) {
  return option.check([field, message](const Config& c) {
    if ((c.*field).empty()) throw std::invalid_argument(message);
  });
}

const trainer::OptionTable<ImportConfig>& import_options() {
  using C = ImportConfig;
  static const trainer::OptionTable<C> table = {
      format_option<C>(),
      required(trainer::value<C>("checkpoint", FIELD(checkpoint),
                                 "The reference's checkpoint (main.py --checkpoint FILE: a torch.save dict)."),
               &C::checkpoint, "name the reference checkpoint: adaspan import reference CKPT.pt --out RUN_DIR"),
      required(trainer::value<C>("out", FIELD(out),
                                 "Run directory to create (or an empty one): RUN_DIR/ckpt-STEP.h5 and RUN_DIR/latest, "
                                 "so `train --resume auto --run-dir RUN_DIR` continues it."),
               &C::out, "--out RUN_DIR is required (the run directory to create)"),
      required(trainer::value<C>("reference-data", FIELD(reference_data),
                                 "The reference's data directory (its --data: train.txt in the enwik8 format); its "
                                 "train.txt numbers the symbols, which maps the reference's ids to bytes."),
               &C::reference_data,
               "--reference-data DIR is required: the reference's data directory, whose train.txt maps its symbol ids "
               "to bytes"),
      trainer::value<C>("batch-size", FIELD(batch_size),
                        "Streams (--batch-size) of the imported run; a resume must use the same. The reference's "
                        "--batch-sz is not in its checkpoint.")
          .check([](const C& c) {
            if (c.batch_size < 1) throw std::invalid_argument("--batch-size must be at least 1");
          }),
      trainer::value<C>("block-size", FIELD(block_size),
                        "--block-size of the imported run (the reference's --block-sz).")
          .check([](const C& c) {
            if (c.block_size < 1) throw std::invalid_argument("--block-size must be at least 1");
          }),
      trainer::value<C>("span-ramp", FIELD(span_ramp),
                        "R of the soft span mask (the reference's --adapt-span-ramp; not in its checkpoint).")
          .check([](const C& c) {
            if (!(c.span_ramp > 0)) throw std::invalid_argument("--span-ramp must be positive");
          }),
      trainer::value<C>("span-loss-coeff", FIELD(span_loss_coeff),
                        "The L1 span penalty's lambda (the reference's --adapt-span-loss)."),
      trainer::value<C>("dropout", FIELD(dropout), "Dropout of the imported run (the reference's --dropout)."),
      trainer::value<C>("warmup-steps", FIELD(warmup_steps),
                        "Warmup steps of the imported run (the reference's --lr-warmup); -1: implied by the stored "
                        "learning rates when still warming up, else 0."),
      trainer::value<C>("nbatches", FIELD(nbatches),
                        "The reference's --nbatches, needed only when its optimizer state has no step count (step = "
                        "(iter_no + 1) x nbatches); 0: use the optimizer's update count."),
      trainer::value<C>("seed", FIELD(seed), "Seed of the fresh rows of bytes the reference's vocabulary lacks."),
      trainer::value<C>("weights-only", FIELD(weights_only),
                        "Import the parameters only, with a fresh optimizer state (e.g. an SGD run)."),
  };
  return table;
}

const trainer::OptionTable<ExportConfig>& export_options() {
  using C = ExportConfig;
  static const trainer::OptionTable<C> table = {
      format_option<C>(),
      required(trainer::value<C>("checkpoint", FIELD(checkpoint), "The adaspan checkpoint (ckpt-STEP.h5)."),
               &C::checkpoint, "name the checkpoint: adaspan export reference CHECKPOINT --out model.pt"),
      required(trainer::value<C>("out", FIELD(out), "The reference checkpoint to write (main.py --checkpoint FILE)."),
               &C::out, "--out FILE.pt is required (the reference checkpoint to write)"),
      required(trainer::value<C>("reference-data", FIELD(reference_data),
                                 "The reference's data directory that the exported model will read: its train.txt "
                                 "numbers the symbols (bytes it lacks are dropped, with a warning)."),
               &C::reference_data,
               "--reference-data DIR is required: the reference's data directory, whose train.txt maps its symbol ids "
               "to bytes"),
      trainer::value<C>("nbatches", FIELD(nbatches),
                        "The reference's --nbatches: iter_no = step / nbatches - 1 (it resumes at iter_no + 1).")
          .check([](const C& c) {
            if (c.nbatches < 1) throw std::invalid_argument("--nbatches must be at least 1");
          }),
  };
  return table;
}

std::string number(double value) { return trainer::Codec<double>::text(value); }

}  // namespace

int run_import(const std::vector<std::string>& args) {
  const CommandLine line{
      "import",
      "adaspan import reference CKPT.pt --out RUN_DIR --reference-data DIR: a checkpoint of\n"
      "facebookresearch/adaptive-span (main.py --checkpoint) as an adaspan run: the model's shape from its tensors,\n"
      "its weights (embedding rows reordered from the reference's symbol ids to bytes), its Adagrad/Adam state and\n"
      "step. eval, generate, inspect and train --resume accept the result. Needs python3 with torch and h5py.",
      {},
      false,
      {"format", "checkpoint"}};
  int exit_code = 0;
  const std::optional<ImportConfig> c = parse_or_exit(line, import_options(), args, exit_code);
  if (!c) return exit_code;
  std::vector<std::string> words{"import",
                                 "--out=" + c->out,
                                 "--reference-data=" + c->reference_data,
                                 "--config-template=" + trainer::to_json(trainer::TrainConfig{}).dump(),
                                 "--batch-size=" + std::to_string(c->batch_size),
                                 "--block-size=" + std::to_string(c->block_size),
                                 "--span-ramp=" + number(c->span_ramp),
                                 "--span-loss-coeff=" + number(c->span_loss_coeff),
                                 "--dropout=" + number(c->dropout),
                                 "--seed=" + std::to_string(c->seed)};
  if (c->warmup_steps >= 0) words.push_back("--warmup-steps=" + std::to_string(c->warmup_steps));
  if (c->nbatches > 0) words.push_back("--nbatches=" + std::to_string(c->nbatches));
  if (c->weights_only) words.push_back("--weights-only");
  words.push_back("--");
  words.push_back(c->checkpoint);
  return exec_python("import",
                     bundled_script("reference_checkpoint.py", ADASPAN_SOURCE_REFERENCE_SCRIPT, kScriptVariable), words,
                     kScriptVariable);
}

int run_export(const std::vector<std::string>& args) {
  const CommandLine line{
      "export",
      "adaspan export reference CHECKPOINT --out model.pt --reference-data DIR: an adaspan checkpoint as the dict\n"
      "facebookresearch/adaptive-span loads with main.py --checkpoint (model state_dict, Adagrad/Adam state,\n"
      "iter_no), so its --full-eval-mode evaluates an adaspan-trained model; prints the matching reference command\n"
      "line. Static adaptive spans or plain attention, softmax only. Needs python3 with torch and h5py.",
      {},
      false,
      {"format", "checkpoint"}};
  int exit_code = 0;
  const std::optional<ExportConfig> c = parse_or_exit(line, export_options(), args, exit_code);
  if (!c) return exit_code;
  const std::vector<std::string> words{
      "export", "--out=" + c->out, "--reference-data=" + c->reference_data, "--nbatches=" + std::to_string(c->nbatches),
      "--",     c->checkpoint};
  return exec_python("export",
                     bundled_script("reference_checkpoint.py", ADASPAN_SOURCE_REFERENCE_SCRIPT, kScriptVariable), words,
                     kScriptVariable);
}

}  // namespace adaspan::launcher
