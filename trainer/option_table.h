#pragma once
// A command's options, each declared once in a table (see trainer/train_option_table.cpp). From
// one declaration come: the command-line flag and its --config key (launcher/command_line.h builds
// Boost.Program_options from the table), the --help text with its group and default, the
// validation, the key in a checkpoint's stored config, and whether a resume must match it. So a
// flag's name is written in one place, and docs/cli.md (generated from --help) follows.
//
//   value("d-model", FIELD(model.d_model), "Hidden size; divisible by --heads.")
//       .in("Model").check(positive).stored("model").must_match()
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace adaspan::trainer {

// A field of Config as an accessor: FIELD(model.d_model) is `config.model.d_model`.
#define FIELD(path) \
  [](auto& config) -> auto& { return config.path; }

// How a value travels between text (flags, --config lines, --help), JSON and the field.
// Specialise for enums: parse (throws std::invalid_argument naming the value), text, json.
template <class T, class Enable = void>
struct Codec;

template <class T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static T parse(const std::string& text) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size()) throw std::invalid_argument("'" + text + "' is not an integer");
    if (std::is_unsigned_v<T> && value < 0) throw std::invalid_argument("'" + text + "' is negative");
    return static_cast<T>(value);
  }
  static std::string text(T value) { return std::to_string(value); }
  static nlohmann::json json(T value) { return value; }
  static T from_json(const nlohmann::json& j) { return j.get<T>(); }
};

template <>
struct Codec<double> {
  static double parse(const std::string& text) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size()) throw std::invalid_argument("'" + text + "' is not a number");
    return value;
  }
  static std::string text(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%g", value);
    return buffer;
  }
  static nlohmann::json json(double value) { return value; }
  static double from_json(const nlohmann::json& j) { return j.get<double>(); }
};

template <>
struct Codec<bool> {
  static bool parse(const std::string& text) {
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
    throw std::invalid_argument("'" + text + "' is not true or false");
  }
  static std::string text(bool value) { return value ? "true" : "false"; }
  static nlohmann::json json(bool value) { return value; }
  static bool from_json(const nlohmann::json& j) { return j.get<bool>(); }
};

template <>
struct Codec<std::string> {
  static std::string parse(const std::string& text) { return text; }
  static std::string text(const std::string& value) { return value; }
  static nlohmann::json json(const std::string& value) { return value; }
  static std::string from_json(const nlohmann::json& j) { return j.get<std::string>(); }
};

// One flag given several values (`--data a.txt b.txt`).
template <>
struct Codec<std::vector<std::string>> {
  static std::string text(const std::vector<std::string>& value) {
    std::string out;
    for (const auto& v : value) out += (out.empty() ? "" : " ") + v;
    return out;
  }
  static nlohmann::json json(const std::vector<std::string>& value) { return value; }
  static std::vector<std::string> from_json(const nlohmann::json& j) { return j.get<std::vector<std::string>>(); }
};

// A comma-separated list of numbers (`--span-init-heads 5,60,10`).
template <>
struct Codec<std::vector<double>> {
  static std::vector<double> parse(const std::string& text) {
    std::vector<double> out;
    std::stringstream list(text);
    for (std::string item; std::getline(list, item, ',');) out.push_back(Codec<double>::parse(item));
    return out;
  }
  static std::string text(const std::vector<double>& value) {
    std::string out;
    for (double v : value) out += (out.empty() ? "" : ",") + Codec<double>::text(v);
    return out;
  }
  static nlohmann::json json(const std::vector<double>& value) { return value; }
  static std::vector<double> from_json(const nlohmann::json& j) { return j.get<std::vector<double>>(); }
};

// What a resumed run must share with its checkpoint.
enum class OnResume {
  free,        // may change (e.g. --steps, --lr)
  must_match,  // the state cannot follow a change (a shape, the streams, the optimizer)
};

template <class Config>
struct Option {
  enum class Kind { value, values, flag };  // one value; several (--data a b); a switch
  std::string name;                         // without dashes: the flag, the --config key and the stored JSON key
  std::string group;                        // the --help section
  std::string help;                         // what it does, with its unit; --help adds the default
  Kind kind = Kind::value;
  bool flag_on_command_line = true;  // false: stored in checkpoints only (e.g. the vocabulary)
  std::function<void(Config&, const std::vector<std::string>&)> parse;  // throws std::invalid_argument
  std::function<std::string(const Config&)> text;
  std::function<nlohmann::json(const Config&)> to_json;
  std::function<void(Config&, const nlohmann::json&)> from_json;
  std::vector<std::function<void(const Config&)>> checks;  // each throws std::invalid_argument
  std::string section;                  // the stored config's section ("model", "data", ...); empty: not stored
  bool added_later = false;             // a checkpoint without it had the default
  bool compare_only_if_stored = false;  // a checkpoint without it is not compared (it was never recorded)
  bool expected_to_change = false;      // a resume does not mention it when it differs (e.g. --steps)
  OnResume resume = OnResume::free;
  std::function<bool(const Config&)> used;      // must_match only while this holds; empty: always
  std::function<double(const Config&)> number;  // numeric fields: the value, for the range checks

  bool stored() const { return !section.empty(); }
  bool used_by(const Config& c) const { return !used || used(c); }

  Option& in(std::string g) {
    group = std::move(g);
    return *this;
  }
  Option& check(std::function<void(const Config&)> f) {
    checks.push_back(std::move(f));
    return *this;
  }
  Option& stored(std::string s) {
    section = std::move(s);
    return *this;
  }
  Option& stored_since_later(std::string s) {
    section = std::move(s);
    added_later = true;
    return *this;
  }
  Option& must_match() {
    resume = OnResume::must_match;
    return *this;
  }
  Option& must_match_when(std::function<bool(const Config&)> f) {
    resume = OnResume::must_match;
    used = std::move(f);
    return *this;
  }
  Option& not_a_flag() {
    flag_on_command_line = false;
    return *this;
  }
  Option& must_match_if_stored() {
    resume = OnResume::must_match;
    compare_only_if_stored = true;
    return *this;
  }
  Option& changes_on_resume() {
    expected_to_change = true;
    return *this;
  }

  Option& required() {
    return check([name = name, text = text](const Config& c) {
      if (text(c).empty()) throw std::invalid_argument("--" + name + " is required");
    });
  }

  // Range checks of numeric fields, with the messages users see ("--steps must be positive, got 0").
  Option& positive() {
    return check([n = number, name = name, text = text](const Config& c) {
      if (!(n(c) > 0)) throw std::invalid_argument("--" + name + " must be positive, got " + text(c));
    });
  }
  Option& at_least(double low, const std::string& note = "") {
    return check([n = number, name = name, text = text, low, note](const Config& c) {
      if (!(n(c) >= low)) {
        throw std::invalid_argument("--" + name + " must be >= " + Codec<double>::text(low) +
                                    (note.empty() ? "" : " (" + note + ")") + ", got " + text(c));
      }
    });
  }
  // low <= value <= high, or < high when `open_high`.
  Option& within(double low, double high, bool open_high = false) {
    return check([n = number, name = name, text = text, low, high, open_high](const Config& c) {
      const double v = n(c);
      if (!(v >= low && (open_high ? v < high : v <= high))) {
        throw std::invalid_argument("--" + name + " must be in [" + Codec<double>::text(low) + ", " +
                                    Codec<double>::text(high) + (open_high ? ")" : "]") + ", got " + text(c));
      }
    });
  }
  Option& one_of(const std::vector<std::string>& choices) {
    return check([name = name, text = text, choices](const Config& c) {
      std::string list;
      for (size_t i = 0; i < choices.size(); ++i) {
        if (choices[i] == text(c)) return;
        list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
      }
      throw std::invalid_argument("--" + name + " '" + text(c) + "' is not " + list);
    });
  }
};

template <class Config>
using OptionTable = std::vector<Option<Config>>;

// An option bound to a field; Kind follows the field's type (bool: a switch, a vector of strings:
// several values). Errors of parse name the flag: "--lr: 'fast' is not a number".
template <class Config, class Access>
Option<Config> value(const std::string& name, Access field, std::string help) {
  using T = std::decay_t<decltype(field(std::declval<Config&>()))>;
  Option<Config> o;
  o.name = name;
  o.help = std::move(help);
  if constexpr (std::is_same_v<T, bool>) o.kind = Option<Config>::Kind::flag;
  if constexpr (std::is_same_v<T, std::vector<std::string>>) o.kind = Option<Config>::Kind::values;
  o.parse = [field, name](Config& c, const std::vector<std::string>& given) {
    try {
      if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        field(c) = given;
      } else {
        field(c) = Codec<T>::parse(given.empty() ? std::string() : given.back());
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("--" + name + ": " + e.what());
    }
  };
  o.text = [field](const Config& c) { return Codec<T>::text(field(c)); };
  o.to_json = [field](const Config& c) { return Codec<T>::json(field(c)); };
  o.from_json = [field](Config& c, const nlohmann::json& j) { field(c) = Codec<T>::from_json(j); };
  if constexpr (std::is_arithmetic_v<T>) o.number = [field](const Config& c) { return static_cast<double>(field(c)); };
  return o;
}

// Every check of every option, in table order; the first failure throws.
template <class Config>
void check_all(const OptionTable<Config>& table, const Config& config) {
  for (const auto& o : table) {
    for (const auto& check : o.checks) check(config);
  }
}

// The stored options as {"section": {"name": value}}.
template <class Config>
nlohmann::json stored_json(const OptionTable<Config>& table, const Config& config) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& o : table) {
    if (o.stored()) out[o.section][o.name] = o.to_json(config);
  }
  return out;
}

// Sets the stored options of `section` (all sections when empty) from `stored`; an option missing
// from it keeps the value in `config` when added later, else throws std::runtime_error naming it.
template <class Config>
void load_stored(const OptionTable<Config>& table, const nlohmann::json& stored, Config& config,
                 const std::string& section = "") {
  for (const auto& o : table) {
    if (!o.stored() || (!section.empty() && o.section != section)) continue;
    const bool present = stored.contains(o.section) && stored[o.section].contains(o.name);
    if (!present) {
      if (o.added_later) continue;
      throw std::runtime_error("the checkpoint's stored config has no '" + o.name + "'");
    }
    try {
      o.from_json(config, stored[o.section][o.name]);
    } catch (const std::exception& e) {
      throw std::runtime_error("the checkpoint's stored '" + o.name + "' is unreadable: " + e.what());
    }
  }
}

// Empty when a run configured as `now` can continue from a checkpoint stored as `stored`, else one
// line naming the first must-match option that differs: "--d-model is 64 in the checkpoint, 128 here".
// An option added later and missing from `stored` is compared as its default.
template <class Config>
std::string resume_mismatch(const OptionTable<Config>& table, const Config& now, const nlohmann::json& stored) {
  const Config defaults{};
  for (const auto& o : table) {
    if (o.resume != OnResume::must_match || !o.used_by(now)) continue;
    const bool present = stored.contains(o.section) && stored[o.section].contains(o.name);
    if (!present && o.compare_only_if_stored) continue;
    if (!present && !o.added_later) return "the checkpoint's config has no '" + o.name + "'";
    const nlohmann::json then = present ? stored[o.section][o.name] : o.to_json(defaults);
    const nlohmann::json here = o.to_json(now);
    if (then == here) continue;
    if (!o.flag_on_command_line) return "the checkpoint's " + o.name + " is " + then.dump() + ", here " + here.dump();
    return "--" + o.name + " is " + then.dump() + " in the checkpoint, " + here.dump() + " here";
  }
  return "";
}

// The stored options a resume may change that differ from the checkpoint's ("--lr 0.07 -> 0.1"),
// for a note; those marked changes_on_resume (--steps, --run-dir) are left out.
template <class Config>
std::vector<std::string> resume_changes(const OptionTable<Config>& table, const Config& now,
                                        const nlohmann::json& stored) {
  std::vector<std::string> changes;
  for (const auto& o : table) {
    if (!o.stored() || o.resume == OnResume::must_match || o.expected_to_change) continue;
    if (!stored.contains(o.section) || !stored[o.section].contains(o.name)) continue;
    const nlohmann::json then = stored[o.section][o.name], here = o.to_json(now);
    if (then != here) changes.push_back("--" + o.name + " " + then.dump() + " -> " + here.dump());
  }
  return changes;
}

}  // namespace adaspan::trainer
