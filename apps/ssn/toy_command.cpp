// ssn toy: the paper's 1-D toy problem, low-rank against diagonal covariance.

#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "flags.h"
#include "ssn/io/png.h"
#include "ssn/toy/toy_problem.h"

namespace ssn::cli {
namespace {

struct ToyFlags {
  bool json = false;
  std::string out;
  toy::ToyOptions options;
};

void run_toy(const ToyFlags& flags) {
  namespace fs = std::filesystem;
  bool created = false;  // --out made by this run: removed again if the figure cannot be written
  if (!flags.out.empty()) {
    // Fail on a bad --out before minutes of fitting, not after.
    std::error_code error;
    created = !fs::exists(flags.out);
    fs::create_directories(flags.out, error);
    TORCH_CHECK(!error && fs::is_directory(flags.out), "cannot create the folder given by --out (",
                flags.out, "): ", error ? error.message() : "not a folder");
    TORCH_CHECK(io::image_io_available(),
                "--out needs PNG output, but ssn was built without ITK (SSN_WITH_ITK=OFF)");
  }
  const toy::ToyResult result = toy::run_toy_problem(flags.options);
  std::string figure;
  if (!flags.out.empty()) {
    figure = (fs::path(flags.out) / "toy.png").string();
    try {
      io::write_rgb_png(figure, toy::render_toy_figure(result));
    } catch (...) {
      std::error_code ignored;
      if (created && fs::is_empty(flags.out, ignored)) fs::remove(flags.out, ignored);
      throw;
    }
  }
  if (flags.json) {
    nlohmann::json out = {{"low_rank", {{"loglikelihood", result.low_rank.log_likelihood}}},
                          {"diagonal", {{"loglikelihood", result.diagonal.log_likelihood}}}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "toy problem: " << flags.options.num_pixels
            << " pixels, two equally likely targets (middle third ambiguous)\n"
            << "  low-rank (rank " << flags.options.rank << ")  log-likelihood "
            << result.low_rank.log_likelihood << "\n"
            << "  diagonal          log-likelihood " << result.diagonal.log_likelihood << "\n"
            << "  (perfect model -> ln 1/2 = -0.693; best diagonal ~ 7 ln 1/2 = -4.85)\n";
  if (!figure.empty()) {
    std::cout << "  figure: " << figure << "\n";
  }
}

}  // namespace

void add_toy_command(CLI::App& app) {
  auto flags = std::make_shared<ToyFlags>();
  CLI::App* command = app.add_subcommand(
      "toy",
      "The paper's 1-D toy problem: fit one Gaussian over 21 logits to two equally likely binary\n"
      "targets with rank-2 and with diagonal covariance; print each model's log-likelihood.");
  command->footer("Example:\n  ssn toy --out out/toy");
  command->add_flag("--json", flags->json,
                    "Print {\"low_rank\": {\"loglikelihood\": x}, \"diagonal\": {...}} as JSON");
  command->add_option("--out", flags->out,
                      "Folder for toy.png: targets, then per model the mean, covariance and "
                      "samples (created if missing)");
  command->add_option("--seed", flags->options.seed, "Random seed")
      ->check(seed())
      ->capture_default_str();
  command->add_option("--rank", flags->options.rank, "Rank of the low-rank model")
      ->check(CLI::Range(1, 21))
      ->capture_default_str();
  command
      ->add_option("--mean-steps", flags->options.mean_steps,
                   "Adam steps on the mean alone (phase 1)")
      ->check(at_least(0))
      ->capture_default_str();
  command
      ->add_option("--joint-steps", flags->options.joint_steps,
                   "Adam steps on mean and covariance (phase 2)")
      ->check(at_least(0))
      ->capture_default_str();
  command
      ->add_option("--eval-samples", flags->options.num_eval_samples,
                   "Monte-Carlo samples of the final log-likelihood estimate")
      ->check(CLI::Range(int64_t{1000}, int64_t{10000000}))
      ->capture_default_str();
  command->callback([flags]() { run_toy(*flags); });
}

}  // namespace ssn::cli
