// The `ssn` command line. Errors are reported as
//   ssn: error: <what>, <where>, <what was expected>
// on stderr with exit code 1.

#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "commands.h"
#include "ssn/runtime/cpu_cache.h"
#include "ssn/runtime/threads.h"

namespace {

constexpr const char* kDescription =
    "ssn: Stochastic Segmentation Networks (Monteiro et al., NeurIPS 2020).\n"
    "A segmentation network whose head outputs a Gaussian over the whole logit map with low-rank\n"
    "plus diagonal covariance; sampling it gives spatially coherent segmentations.";

int report_error(const std::string& message) {
  std::cerr << "ssn: error: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "ssn"};
  app.require_subcommand(1);
  app.failure_message([](const CLI::App* failed, const CLI::Error& error) {
    return "ssn: error: " + std::string(error.what()) + "\nRun '" + failed->get_name() +
           " --help' for the flags.\n";
  });
  // Debian's LibTorch starts with one thread; use every core unless --threads says otherwise.
  // Options are applied before any subcommand runs.
  ssn::runtime::configure_threads();
  // Large CPU blocks are cached and reused rather than returned to the system on every free
  // (runtime/cpu_cache.h; docs/performance.md has the A/B). SSN_CPU_CACHE=0 turns it off.
  if (const char* cache = std::getenv("SSN_CPU_CACHE"); !cache || std::string(cache) != "0") {
    ssn::runtime::install_cpu_cache();
  }
  app.add_option_function<int>(
         "--threads", [](const int& threads) { ssn::runtime::configure_threads(threads); },
         "Intra-op CPU threads for LibTorch (default: all cores available to the process)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // More threads than 4 per core only thrash (100000 would start 100000 threads).
            const int limit = 4 * ssn::runtime::available_cores();
            int64_t value = 0;
            if (!CLI::detail::lexical_cast(text, value) || value < 1 || value > limit) {
              return "expected an integer from 1 to " + std::to_string(limit) + " (4 per core of " +
                     std::to_string(ssn::runtime::available_cores()) + "), got " + text;
            }
            return "";
          },
          "1..4xCORES"));

  ssn::cli::add_toy_command(app);
  ssn::cli::add_synth_command(app);
  ssn::cli::add_preprocess_command(app);
  ssn::cli::add_index_nnunet_command(app);
  ssn::cli::add_convert_lidc_command(app);
  ssn::cli::add_model_command(app);
  ssn::cli::add_train_command(app);
  ssn::cli::add_calibrate_command(app);
  ssn::cli::add_predict_command(app);
  ssn::cli::add_import_checkpoint_command(app);
  ssn::cli::add_export_checkpoint_command(app);
  ssn::cli::add_sample_command(app);
  ssn::cli::add_evaluate_command(app);
  ssn::cli::add_report_command(app);
  ssn::cli::add_benchmark_command(app);
  ssn::cli::add_demo_command(app);

  // CLI11 reports a misspelt subcommand as "A subcommand is required": name it instead.
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word == "--threads") {
      ++i;
      continue;
    }
    if (word.rfind("-", 0) == 0) continue;
    bool known_command = true;
    try {
      known_command = app.get_subcommand_ptr(word) != nullptr;
    } catch (const CLI::OptionNotFound&) {
      known_command = false;
    }
    if (!known_command) {
      std::string known;
      for (const CLI::App* command : app.get_subcommands({})) {
        known += (known.empty() ? "" : ", ") + command->get_name();
      }
      return report_error("unknown subcommand '" + word + "' (expected one of: " + known + ")");
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // CLI11 prints the message; every failure exits with 1 as documented, help with 0.
    return app.exit(error) == 0 ? 0 : 1;
  } catch (const c10::Error& error) {
    return report_error(error.what_without_backtrace());
  } catch (const std::exception& error) {
    return report_error(error.what());
  }
  return 0;
}
