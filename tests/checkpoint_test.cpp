// Checkpoints in one process: the file round trip, bit-exact resume, damage detection, the store's
// atomic commit and retention, and the documented layout read with the plain HDF5 C API.
#include "checkpointing/checkpoint_file.h"
#include "checkpointing/checkpoint_store.h"
#include "hdf5_chunks.h"
#include "tests/scratch_dir.h"
#include "tests/small_configs.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using checkpointing::TrainingState;

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("ckpt", name); }

trainer::TrainConfig tiny_run(const fs::path& dir, int64_t steps) { return testing::small_train_config(dir, steps); }

std::vector<nlohmann::json> read_metrics(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// step -> bpc of the training records.
std::map<int64_t, double> train_bpc(const std::vector<nlohmann::json>& records) {
  std::map<int64_t, double> out;
  for (const auto& r : records) {
    if (r.contains("bpc") && !r.contains("split")) out[r["step"].get<int64_t>()] = r["bpc"].get<double>();
  }
  return out;
}

TEST(Checkpoint, FileRoundTripKeepsEveryPiece) {
  const fs::path dir = fresh_dir("roundtrip");
  at::manual_seed(3);
  TrainingState s;
  s.step = 12;
  s.tokens_seen = 345;
  s.config_json = R"({"model":{"d-model":32}})";
  s.parameters = {{"a.weight", at::randn({5, 3})}, {"b", at::randn({7})}};
  s.optimizer = "adam";
  s.optimizer_steps = 7;
  s.optimizer_state = {{"exp_avg/a.weight", at::randn({5, 3})}, {"exp_avg_sq/b", at::rand({7})}};
  s.stream_positions = {10, 2000, 30, 4};
  s.cache = {{"layer.0/keys.0", at::randn({4, 9, 2})},
             {"layer.0/values.0", at::randn({4, 9, 2})},
             {"layer.1/hidden", at::randn({4, 5, 8})}};
  s.rng_cpu = at::randint(0, 255, {5056}, at::kByte);
  s.spans = {{1.5, 2.0}, {3.25, 4.0}};
  s.placement = {{0, 0}, {0, 0}};
  const std::string path = (dir / "state.h5").string();
  checkpointing::write_checkpoint(path, s, {cluster::Communicator(), 4});

  const TrainingState r = checkpointing::read_checkpoint(path, {0, 1, 0, 4});
  EXPECT_EQ(r.step, 12);
  EXPECT_EQ(r.tokens_seen, 345);
  EXPECT_EQ(r.config_json, s.config_json);
  EXPECT_EQ(r.optimizer, "adam");
  EXPECT_EQ(r.optimizer_steps, 7);
  EXPECT_EQ(r.stream_positions, s.stream_positions);
  EXPECT_EQ(r.spans, s.spans);
  EXPECT_EQ(r.placement, s.placement);
  const auto same = [](const std::vector<checkpointing::NamedTensor>& a,
                       const std::vector<checkpointing::NamedTensor>& b) {
    ASSERT_EQ(a.size(), b.size());
    std::map<std::string, at::Tensor> by_name;
    for (const auto& t : b) by_name[t.name] = t.tensor;
    for (const auto& t : a) {
      ASSERT_TRUE(by_name.count(t.name)) << t.name;
      EXPECT_EQ(by_name[t.name].scalar_type(), t.tensor.scalar_type()) << t.name;
      EXPECT_TRUE(at::equal(by_name[t.name], t.tensor)) << t.name;
    }
  };
  same(s.parameters, r.parameters);
  same(s.optimizer_state, r.optimizer_state);
  same(s.cache, r.cache);
  ASSERT_TRUE(r.rng_cpu.defined());
  EXPECT_TRUE(at::equal(r.rng_cpu, s.rng_cpu));

  // Another layout reads its own streams' cache rows; the writer's RNG state is not its own.
  const TrainingState half = checkpointing::read_checkpoint(path, {1, 2, 2, 2});
  for (const auto& t : half.cache) {
    for (const auto& orig : s.cache) {
      if (orig.name == t.name) EXPECT_TRUE(at::equal(t.tensor, orig.tensor.narrow(0, 2, 2))) << t.name;
    }
  }
  EXPECT_FALSE(half.rng_cpu.defined());
  fs::remove_all(dir);
}

// llm.c's test: save, reload, continue must equal never stopping, bit for bit.
TEST(Checkpoint, ResumeIsBitExact) {
  for (const auto cache : {model::CacheMode::kv, model::CacheMode::hidden}) {
    const std::string mode = model::to_string(cache);
    const fs::path straight_dir = fresh_dir("straight_" + mode), resumed_dir = fresh_dir("resumed_" + mode);
    trainer::TrainConfig c = tiny_run(straight_dir, 20);
    c.model.cache = cache;
    c.model.dropout = 0.1;  // the RNG state must come back too
    c.optim.optimizer = "adam";
    c.optim.lr = 0.003;
    const trainer::TrainResult straight = trainer::train(c, true);

    c.run.run_dir = resumed_dir.string();
    c.run.steps = 10;
    c.run.checkpoint_every = 10;
    trainer::train(c, true);
    ASSERT_TRUE(fs::exists(resumed_dir / "ckpt-10.h5"));
    c.run.steps = 20;
    c.run.resume = "auto";
    const trainer::TrainResult resumed = trainer::train(c, true);

    EXPECT_EQ(resumed.first_step, 11);
    EXPECT_EQ(resumed.param_norm, straight.param_norm) << mode;
    const auto a = train_bpc(read_metrics(straight_dir)), b = train_bpc(read_metrics(resumed_dir));
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a, b) << mode;
    fs::remove_all(straight_dir);
    fs::remove_all(resumed_dir);
  }
}

void flip_byte(const std::string& file, uint64_t offset) {
  std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5a);
  io.seekp(static_cast<std::streamoff>(offset));
  io.write(&byte, 1);
}

std::string load_error(const std::string& path) {
  try {
    checkpointing::read_checkpoint(path, {0, 1, 0, 4});
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, DamageIsDetected) {
  const fs::path dir = fresh_dir("damage");
  trainer::TrainConfig c = tiny_run(dir, 4);
  c.run.checkpoint_every = 4;
  trainer::train(c, true);
  const std::string good = checkpointing::checkpoint_path(dir.string(), 4);
  EXPECT_EQ(load_error(good), "");

  const std::string corrupted = (dir / "corrupted.h5").string();
  fs::copy_file(good, corrupted);
  const haddr_t chunk = testing::first_chunk_address(corrupted, "model/out_emb.weight");
  ASSERT_NE(chunk, HADDR_UNDEF);
  flip_byte(corrupted, chunk + 100);
  EXPECT_NE(load_error(corrupted).find("model/out_emb.weight"), std::string::npos) << load_error(corrupted);

  const std::string truncated = (dir / "truncated.h5").string();
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  EXPECT_NE(load_error(truncated), "");

  const std::string missing = (dir / "missing.h5").string();
  fs::copy_file(good, missing);
  {
    const hid_t f = H5Fopen(missing.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(H5Ldelete(f, "model/key_pe", H5P_DEFAULT), 0);
    H5Fclose(f);
  }
  c.run.resume = missing;
  c.run.steps = 6;
  try {
    trainer::train(c, true);
    ADD_FAILURE() << "resumed from a checkpoint without model/key_pe";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("model/key_pe"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, IncompatibleConfigIsRefusedNamingTheField) {
  const fs::path dir = fresh_dir("incompatible");
  trainer::TrainConfig c = tiny_run(dir, 2);
  c.run.checkpoint_every = 2;
  trainer::train(c, true);
  c.run.resume = "auto";
  c.run.steps = 4;
  c.model.d_model = 64;
  try {
    trainer::train(c, true);
    ADD_FAILURE() << "resumed a d-model 32 checkpoint with d-model 64";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--d-model is 32 in the checkpoint, 64 here"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, CommitRenamesUpdatesLatestAndKeepsTheNewest) {
  const fs::path dir = fresh_dir("store");
  for (int64_t step : {2, 4, 6, 8}) {
    std::ofstream(checkpointing::temporary_path(dir.string(), step)) << "checkpoint " << step;
    const std::string path = checkpointing::commit_checkpoint(dir.string(), step, 2);
    EXPECT_EQ(path, checkpointing::checkpoint_path(dir.string(), step));
    EXPECT_FALSE(fs::exists(checkpointing::temporary_path(dir.string(), step)));
    std::ifstream latest(dir / "latest");
    std::string name;
    latest >> name;
    EXPECT_EQ(name, "ckpt-" + std::to_string(step) + ".h5");
  }
  // A crashed write leaves a .tmp: never listed, never used.
  std::ofstream(checkpointing::temporary_path(dir.string(), 10)) << "half written";
  const std::vector<std::string> expected{checkpointing::checkpoint_path(dir.string(), 8),
                                          checkpointing::checkpoint_path(dir.string(), 6)};
  EXPECT_EQ(checkpointing::list_checkpoints(dir.string()), expected);
  fs::remove_all(dir);
}

// What docs/checkpoint-format.md promises, read with nothing but the HDF5 C API.
TEST(Checkpoint, ReadableWithTheHdf5CApiByDocumentedNames) {
  const fs::path dir = fresh_dir("capi");
  trainer::TrainConfig c = tiny_run(dir, 3);
  c.run.checkpoint_every = 3;
  const trainer::TrainResult result = trainer::train(c, true);
  const std::string path = checkpointing::checkpoint_path(dir.string(), 3);

  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const auto int_attribute = [&](const char* name) {
    int64_t value = -1;
    const hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &value);
    H5Aclose(a);
    return value;
  };
  EXPECT_EQ(int_attribute("format_version"), 1);
  EXPECT_EQ(int_attribute("step"), 3);
  EXPECT_EQ(int_attribute("tokens_seen"), 3 * 4 * 32);
  EXPECT_EQ(int_attribute("complete"), 1);
  const auto dims = [&](const char* name) {
    const hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    EXPECT_GE(d, 0) << name;
    const hid_t space = H5Dget_space(d);
    std::vector<hsize_t> out(static_cast<size_t>(H5Sget_simple_extent_ndims(space)));
    H5Sget_simple_extent_dims(space, out.data(), nullptr);
    H5Sclose(space);
    H5Dclose(d);
    return std::vector<int64_t>(out.begin(), out.end());
  };
  EXPECT_EQ(dims("/model/in_emb.weight"), (std::vector<int64_t>{256, 32}));
  EXPECT_EQ(dims("/model/key_pe"), (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(dims("/model/layers.1.attn.span.current_val"), (std::vector<int64_t>{2}));
  EXPECT_EQ(dims("/optimizer/sum/layers.0.ff.fc1.weight"), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(dims("/data/stream_positions"), (std::vector<int64_t>{4}));
  EXPECT_EQ(dims("/spans"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(dims("/placement"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(dims("/cache/layer.0/keys.1")[0], 4);
  EXPECT_EQ(dims("/cache/layer.0/keys.1")[2], 16);

  // The spans stored are the model's (bytes), and the positions are where 3 blocks of 32 end.
  std::vector<double> spans(4);
  hid_t d = H5Dopen2(f, "/spans", H5P_DEFAULT);
  H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, spans.data());
  H5Dclose(d);
  EXPECT_DOUBLE_EQ(spans[2], result.spans[1][0]);
  std::vector<int64_t> positions(4);
  d = H5Dopen2(f, "/data/stream_positions", H5P_DEFAULT);
  H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, positions.data());
  H5Dclose(d);
  const int64_t corpus = 4 << 20;  // the built-in training corpus
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(positions[static_cast<size_t>(k)], (k * corpus / 4 + 3 * 32) % corpus);
  H5Fclose(f);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan
