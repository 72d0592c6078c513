#pragma once
// Every subcommand's flags go through here: Boost.Program_options built from the command's
// option table (trainer/option_table.h), --help generated from it, `key = value` lines of a
// --config file parsed exactly as the command line (command-line flags win), one-line errors.
#include "trainer/option_table.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace adaspan::launcher {

struct CommandLine {
  std::string command;  // "train"
  std::string summary;  // --help's first lines
  // --help sections in order: (group, title). Options of other groups (or none) go under "Options".
  std::vector<std::pair<std::string, std::string>> groups;
  bool config_file = false;             // accepts --config FILE
  std::vector<std::string> positional;  // options given by position, in order (e.g. "file")
};

template <class Config>
struct ParsedCommand {
  bool help = false;
  std::string help_text;
  std::string error;  // one line; empty when parsed and valid
  Config config;
  std::set<std::string> given;  // the options set on the command line or in --config
};

namespace detail {

namespace po = boost::program_options;

template <class Config>
po::options_description describe(const CommandLine& line, const trainer::OptionTable<Config>& table,
                                 bool with_positional) {
  const Config defaults{};
  po::options_description all(line.summary + "\n\nOptions");
  po::options_description general("General");
  general.add_options()("help,h", "Show this help and exit.");
  if (line.config_file) {
    general.add_options()("config", po::value<std::string>(),
                          "File of `key = value` lines with any of the flags below (command-line flags win).");
  }
  std::vector<po::options_description> sections;
  for (const auto& [group, title] : line.groups) sections.emplace_back(title);
  for (const auto& o : table) {
    if (!o.flag_on_command_line) continue;
    const bool positional = std::find(line.positional.begin(), line.positional.end(), o.name) != line.positional.end();
    if (positional && !with_positional) continue;
    po::value_semantic* semantic = nullptr;
    const std::string shown = o.text(defaults);
    if (o.kind == trainer::Option<Config>::Kind::flag) {
      semantic = po::bool_switch();
    } else if (o.kind == trainer::Option<Config>::Kind::values) {
      semantic = po::value<std::vector<std::string>>()->multitoken();
    } else if (shown.empty() || positional) {
      semantic = po::value<std::string>();
    } else {
      semantic = po::value<std::string>()->default_value(shown);
    }
    size_t section = line.groups.size();
    for (size_t g = 0; g < line.groups.size(); ++g) {
      if (line.groups[g].first == o.group) section = g;
    }
    (section < sections.size() ? sections[section] : general).add_options()(o.name.c_str(), semantic, o.help.c_str());
  }
  all.add(general);
  for (auto& s : sections) all.add(s);
  return all;
}

}  // namespace detail

// Parses `args` (the words after the command) into a Config from the table's defaults, then runs
// the table's checks. Never throws: an error is one line in `error`.
template <class Config>
ParsedCommand<Config> parse_command(const CommandLine& line, const trainer::OptionTable<Config>& table,
                                    const std::vector<std::string>& args) {
  namespace po = detail::po;
  ParsedCommand<Config> out;
  const po::options_description shown = detail::describe(line, table, false);
  std::ostringstream help;
  help << shown;
  out.help_text = help.str();
  try {
    const po::options_description all = detail::describe(line, table, true);
    po::positional_options_description positional;
    for (const auto& name : line.positional) positional.add(name.c_str(), 1);
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    if (vm.count("help")) {
      out.help = true;
      return out;
    }
    if (line.config_file && vm.count("config")) {
      const std::string file = vm["config"].as<std::string>();
      if (std::filesystem::exists(file) && !std::filesystem::is_regular_file(file)) {
        throw std::invalid_argument("--config: '" + file + "' is not a file");
      }
      std::ifstream in(file);
      if (!in) throw std::invalid_argument("--config: cannot read '" + file + "'");
      po::store(po::parse_config_file(in, all), vm);  // values already set (the command line) win
    }
    po::notify(vm);
    for (const auto& o : table) {
      if (!o.flag_on_command_line || !vm.count(o.name) || vm[o.name].defaulted()) continue;
      const po::variable_value& value = vm[o.name];
      if (o.kind == trainer::Option<Config>::Kind::flag) {
        if (value.as<bool>()) o.parse(out.config, {"true"});
      } else if (o.kind == trainer::Option<Config>::Kind::values) {
        o.parse(out.config, value.as<std::vector<std::string>>());
      } else {
        o.parse(out.config, {value.as<std::string>()});
      }
      out.given.insert(o.name);
    }
    trainer::check_all(table, out.config);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

// For commands run as one process: prints --help (returns nullopt, exit 0) or the error line
// (nullopt, exit 2); else the parsed config, `exit_code` untouched.
template <class Config>
std::optional<Config> exit_on_help_or_error(const CommandLine& line, ParsedCommand<Config>& parsed, int& exit_code) {
  if (parsed.help) {
    std::cout << parsed.help_text << "\n";
    exit_code = 0;
    return std::nullopt;
  }
  if (!parsed.error.empty()) {
    std::fprintf(stderr, "adaspan %s: error: %s\n", line.command.c_str(), parsed.error.c_str());
    exit_code = 2;
    return std::nullopt;
  }
  return std::move(parsed.config);
}

// parse_command, then exit_on_help_or_error.
template <class Config>
std::optional<Config> parse_or_exit(const CommandLine& line, const trainer::OptionTable<Config>& table,
                                    const std::vector<std::string>& args, int& exit_code) {
  ParsedCommand<Config> parsed = parse_command(line, table, args);
  return exit_on_help_or_error(line, parsed, exit_code);
}

}  // namespace adaspan::launcher
