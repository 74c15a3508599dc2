#pragma once

// Validators shared by the subcommands' flags. Their messages name the flag (CLI11 adds it) and
// what was expected, in words a user reads (no "0 to 1.797e308" ranges of double).

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ssn::cli {

/// An integer >= minimum.
inline CLI::Validator at_least(int64_t minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        int64_t value = 0;
        if (!CLI::detail::lexical_cast(text, value)) return "expected an integer, got " + text;
        if (value < minimum) {
          return "expected an integer >= " + std::to_string(minimum) + ", got " + text;
        }
        return "";
      },
      "INT>=" + std::to_string(minimum));
}

/// A finite number >= 0 (a temperature).
inline CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || !(value >= 0) ||
            value > std::numeric_limits<double>::max()) {
          return "expected a finite number >= 0, got " + text;
        }
        return "";
      },
      "NUMBER>=0");
}

/// A finite number that is 0 (off) or >= 1 (a ratio).
inline CLI::Validator zero_or_at_least_one() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || !(value == 0 || value >= 1) ||
            value > std::numeric_limits<double>::max()) {
          return "expected 0 or a finite number >= 1, got " + text;
        }
        return "";
      },
      "0|NUMBER>=1");
}

/// A random seed: an integer from 0 to 2^63 - 1 ("-1" would otherwise wrap around silently).
inline CLI::Validator seed() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        int64_t value = 0;
        if (!CLI::detail::lexical_cast(text, value) || value < 0) {
          return "expected a seed, an integer from 0 to 9223372036854775807, got " + text;
        }
        return "";
      },
      "SEED");
}

/// --fractions train,valid,test and --seed of a seeded split (data/splits.h); `what` says what is
/// split ("cases", "labelled cases").
inline void add_split_options(CLI::App* command, std::vector<double>& fractions,
                              uint64_t& seed_value, const std::string& what) {
  command
      ->add_option("--fractions", fractions,
                   "train,valid,test fractions of the " + what + ", drawn with --seed")
      ->delimiter(',')
      ->expected(3)
      ->capture_default_str();
  command->add_option("--seed", seed_value, "Seed of the split")
      ->check(seed())
      ->capture_default_str();
}

}  // namespace ssn::cli
