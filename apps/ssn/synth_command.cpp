// ssn synth: synthetic data sets in the layouts of the real ones.

#include <iostream>
#include <memory>

#include "commands.h"
#include "ssn/data/synthetic.h"

namespace ssn::cli {
namespace {

struct SynthFlags {
  std::string kind;
  std::string out;
  data::LidcLikeOptions options;
};

void run_synth(const SynthFlags& flags) {
  const data::SplitCounts counts = data::write_lidc_like(flags.out, flags.options);
  std::cout << "wrote a lidc-like data set to " << flags.out << ": " << counts.train << " train, "
            << counts.val << " val, " << counts.test << " test images, 4 annotator masks each\n";
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto flags = std::make_shared<SynthFlags>();
  CLI::App* command = app.add_subcommand(
      "synth",
      "Write a synthetic data set in the layout of a real one. lidc-like: the LIDC crops layout\n"
      "(<split>/images/<patient>/<slice>.png, <split>/gt/<patient>/<slice>_l1..4.png), "
      "lesion-like\n"
      "blobs whose four annotators disagree on the boundary and on faint lesions. (brats-like "
      "comes\n"
      "with the 3-D pipeline.)");
  command->add_option("--kind", flags->kind, "Data set kind")
      ->required()
      ->check(CLI::IsMember({"lidc-like"}));
  command->add_option("--out", flags->out, "Output folder (must not exist, or be empty)")
      ->required();
  command->add_option("--cases", flags->options.cases, "Images in all, split 8:1:1 by patient")
      ->check(CLI::Range(int64_t{3}, int64_t{1000000}))
      ->capture_default_str();
  command->add_option("--seed", flags->options.seed, "Random seed")->capture_default_str();
  command->callback([flags]() { run_synth(*flags); });
}

}  // namespace ssn::cli
