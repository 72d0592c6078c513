#pragma once
// One checkpoint = one HDF5 file (layout in docs/checkpoint-format.md). Written collectively by
// the data-parallel ranks (each writes its row share of every tensor; nobody gathers the model);
// read independently by each rank of any later layout, which takes what it needs.
#include "checkpointing/training_state.h"
#include "cluster/communicator.h"

#include <string>

namespace adaspan::checkpointing {

constexpr int64_t kFormatVersion = 1;

struct WriterLayout {
  cluster::Communicator comm;  // not valid: a single rank writes serially
  int64_t global_streams = 1;  // B; this rank's cache rows are its row share of B
};

// Collective over layout.comm. Every rank passes the same names and shapes; parameters and
// optimizer state are whole on every rank (each writes its share of rows).
void write_checkpoint(const std::string& path, const TrainingState& state, const WriterLayout& layout);

struct ReaderLayout {
  int rank = 0, ranks = 1;  // this rank among the data-parallel ranks reading
  int64_t first_stream = 0, local_streams = 1;
};

// Reads this rank's view; throws std::runtime_error naming the file and the object on a missing
// dataset, a checksum mismatch, a truncated file or a newer format. rng_* are left undefined when
// the writer had another number of ranks.
TrainingState read_checkpoint(const std::string& path, const ReaderLayout& layout);

// Only the parameters (whole tensors, canonical names): what inference needs.
std::vector<NamedTensor> read_parameters(const std::string& path);

// The small part: step, tokens, config, optimizer name, spans, placement (no tensors).
TrainingState read_checkpoint_header(const std::string& path);

}  // namespace adaspan::checkpointing
