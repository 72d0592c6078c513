#include "model/model_config.h"

#include <stdexcept>

namespace adaspan::model {

CacheMode parse_cache_mode(const std::string& name) {
  if (name == "kv") return CacheMode::kv;
  if (name == "hidden") return CacheMode::hidden;
  throw std::invalid_argument("unknown cache mode '" + name + "' (expected kv or hidden)");
}

std::string to_string(CacheMode mode) { return mode == CacheMode::kv ? "kv" : "hidden"; }

}  // namespace adaspan::model
