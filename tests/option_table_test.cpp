// The option table of `adaspan train` (trainer/train_option_table.cpp) is the one declaration of
// every option: these tests walk it, so that an option added to it is held to the same rules.
#include "trainer/config_json.h"
#include "trainer/train_option_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace adaspan {
namespace {

using trainer::OnResume;
using trainer::TrainConfig;

// A value other than the default for every stored option. An option added to the table and
// stored in checkpoints needs one here (the test says which).
const std::map<std::string, std::string> kNonDefault = {
    {"data", "/tmp/a.txt"},
    {"data-identity", "7 bytes, sample hash 00"},
    {"valid-data", "/tmp/b.txt"},
    {"batch-size", "24"},
    {"block-size", "48"},
    {"vocab", "300"},
    {"layers", "3"},
    {"d-model", "96"},
    {"heads", "6"},
    {"ff-size", "200"},
    {"attn-span", "700"},
    {"span-ramp", "16"},
    {"span-init", "0.25"},
    {"span-init-heads", "1,2,3,4,5,6"},
    {"span-loss-coeff", "3e-05"},
    {"dropout", "0.1"},
    {"cache", "hidden"},
    {"trim-hidden-cache", "false"},
    {"attention", "sparse-fixed"},
    {"span-mode", "dynamic"},
    {"normalizer", "asentmax"},
    {"asentmax-scale", "hidden"},
    {"sparse-stride", "16"},
    {"optimizer", "adam"},
    {"lr", "0.5"},
    {"warmup-steps", "7"},
    {"grad-clip", "0.2"},
    {"grad-accum", "3"},
    {"adam-beta1", "0.8"},
    {"adam-beta2", "0.95"},
    {"adam-eps", "1e-06"},
    {"steps", "77"},
    {"seed", "9"},
    {"device", "cuda:1"},
    {"tp", "2"},
    {"cp", "2"},
    {"zero", "1"},
    {"run-dir", "/tmp/elsewhere"},
    {"checkpoint-every", "11"},
    {"checkpoint-minutes", "30"},
    {"no-final-checkpoint", "true"},
    {"keep-checkpoints", "5"},
    {"async-checkpoint", "true"},
};

TrainConfig non_default_config() {
  TrainConfig c;
  for (const auto& o : trainer::train_option_table()) {
    const auto it = kNonDefault.find(o.name);
    if (it != kNonDefault.end()) o.parse(c, {it->second});
  }
  return c;
}

TEST(OptionTable, EveryOptionHasOneNameHelpAndAGroup) {
  std::set<std::string> groups, names;
  for (const auto& [group, title] : trainer::train_option_groups()) groups.insert(group);
  for (const auto& o : trainer::train_option_table()) {
    EXPECT_TRUE(names.insert(o.name).second) << "--" << o.name << " is declared twice";
    EXPECT_GE(o.help.size(), 10u) << "--" << o.name << " has no help";
    if (o.flag_on_command_line) EXPECT_TRUE(groups.count(o.group)) << "--" << o.name << " has no --help section";
    if (o.resume == OnResume::must_match) EXPECT_TRUE(o.stored()) << "--" << o.name << ": must match but not stored";
  }
}

TEST(OptionTable, EveryStoredOptionRoundTripsThroughTheCheckpointConfig) {
  const TrainConfig defaults;
  const TrainConfig written = non_default_config();
  // As a checkpoint keeps it: JSON text, parsed back.
  const nlohmann::json stored = nlohmann::json::parse(trainer::to_json(written).dump());
  const TrainConfig read = trainer::config_from_json(stored);
  int checked = 0;
  for (const auto& o : trainer::train_option_table()) {
    if (!o.stored()) continue;
    ASSERT_TRUE(kNonDefault.count(o.name)) << "give --" << o.name << " a non-default value in kNonDefault";
    EXPECT_NE(o.text(written), o.text(defaults)) << "--" << o.name << ": the test value is the default";
    EXPECT_TRUE(stored[o.section].contains(o.name)) << "--" << o.name;
    EXPECT_EQ(o.text(read), o.text(written)) << "--" << o.name << " does not round-trip";
    ++checked;
  }
  EXPECT_GE(checked, 35);
}

TEST(OptionTable, EveryMustMatchOptionChangedOnResumeIsRefusedNamingIt) {
  const TrainConfig defaults;
  const TrainConfig then = non_default_config();  // every variant on, so every condition holds
  const nlohmann::json stored = trainer::to_json(then);
  EXPECT_EQ(trainer::resume_incompatibility(then, stored), "");
  int checked = 0;
  for (const auto& o : trainer::train_option_table()) {
    TrainConfig now = then;
    o.parse(now, {o.text(defaults)});
    const std::string why = trainer::resume_incompatibility(now, stored);
    if (o.resume == OnResume::must_match) {
      EXPECT_NE(why.find(o.name + " is "), std::string::npos) << "--" << o.name << ": '" << why << "'";
      ++checked;
    } else {
      EXPECT_EQ(why, "") << "--" << o.name << " may change on resume";
    }
  }
  EXPECT_GE(checked, 13);
}

TEST(OptionTable, VariantOptionsMatterOnlyWhereTheirVariantIsOn) {
  TrainConfig then;  // softmax, adaptive
  const nlohmann::json stored = trainer::to_json(then);
  TrainConfig now = then;
  now.model.asentmax_scale = model::AsentmaxScale::hidden;
  now.model.sparse_stride = 8;
  EXPECT_EQ(trainer::resume_incompatibility(now, stored), "");
}

TEST(OptionTable, ACheckpointWithoutLaterOptionsReadsAsTheirDefaults) {
  nlohmann::json stored = trainer::to_json(TrainConfig{});
  for (const char* later :
       {"attention", "span-mode", "normalizer", "asentmax-scale", "sparse-stride", "span-init-heads"}) {
    stored["model"].erase(later);
  }
  EXPECT_EQ(trainer::resume_incompatibility(TrainConfig{}, stored), "");
  stored["model"].erase("d-model");
  EXPECT_NE(trainer::resume_incompatibility(TrainConfig{}, stored).find("'d-model'"), std::string::npos);
  EXPECT_THROW(trainer::model_config_from_json(stored), std::runtime_error);
}

}  // namespace
}  // namespace adaspan
