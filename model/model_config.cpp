#include "model/model_config.h"

#include <stdexcept>
#include <utility>
#include <vector>

namespace adaspan::model {

CacheMode parse_cache_mode(const std::string& name) {
  if (name == "kv") return CacheMode::kv;
  if (name == "hidden") return CacheMode::hidden;
  throw std::invalid_argument("unknown cache mode '" + name + "' (expected kv or hidden)");
}

std::string to_string(CacheMode mode) { return mode == CacheMode::kv ? "kv" : "hidden"; }

namespace {

// name <-> value for a small enum; parse throws naming the flag's choices.
template <typename Enum>
struct Names {
  const char* what;
  std::vector<std::pair<Enum, std::string>> names;

  Enum parse(const std::string& name) const {
    std::string choices;
    for (const auto& [value, text] : names) {
      if (text == name) return value;
      choices += (choices.empty() ? "" : ", ") + text;
    }
    throw std::invalid_argument("unknown " + std::string(what) + " '" + name + "' (expected one of " + choices + ")");
  }
  std::string text(Enum value) const {
    for (const auto& [v, t] : names) {
      if (v == value) return t;
    }
    return "?";
  }
};

const Names<AttentionKind> kAttention{"attention",
                                      {{AttentionKind::adaptive, "adaptive"},
                                       {AttentionKind::fixed, "fixed"},
                                       {AttentionKind::full, "full"},
                                       {AttentionKind::sparse_fixed, "sparse-fixed"}}};
const Names<SpanMode> kSpanMode{"span mode", {{SpanMode::static_span, "static"}, {SpanMode::dynamic, "dynamic"}}};
const Names<NormalizerKind> kNormalizer{"normalizer",
                                        {{NormalizerKind::softmax, "softmax"},
                                         {NormalizerKind::entmax15, "entmax15"},
                                         {NormalizerKind::asentmax, "asentmax"}}};
const Names<AsentmaxScale> kAsentmaxScale{"asentmax scale",
                                          {{AsentmaxScale::head, "head"}, {AsentmaxScale::hidden, "hidden"}}};

}  // namespace

AttentionKind parse_attention_kind(const std::string& name) { return kAttention.parse(name); }
std::string to_string(AttentionKind kind) { return kAttention.text(kind); }
SpanMode parse_span_mode(const std::string& name) { return kSpanMode.parse(name); }
std::string to_string(SpanMode mode) { return kSpanMode.text(mode); }
NormalizerKind parse_normalizer(const std::string& name) { return kNormalizer.parse(name); }
std::string to_string(NormalizerKind kind) { return kNormalizer.text(kind); }
AsentmaxScale parse_asentmax_scale(const std::string& name) { return kAsentmaxScale.parse(name); }
std::string to_string(AsentmaxScale scale) { return kAsentmaxScale.text(scale); }

}  // namespace adaspan::model
