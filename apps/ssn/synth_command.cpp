// ssn synth: synthetic data sets in the layouts of the real ones.

#include <iostream>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/data/synthetic.h"

namespace ssn::cli {
namespace {

struct SynthFlags {
  std::string kind;
  std::string out;
  int64_t cases = -1;  // -1: the kind's default
  uint64_t seed = 0;
  std::vector<int64_t> shape;
};

void run_synth(const SynthFlags& flags) {
  if (flags.kind == "lidc-like") {
    data::LidcLikeOptions options;
    if (flags.cases > 0) options.cases = flags.cases;
    options.seed = flags.seed;
    const data::SplitCounts counts = data::write_lidc_like(flags.out, options);
    std::cout << "wrote a lidc-like data set to " << flags.out << ": " << counts.train << " train, "
              << counts.val << " val, " << counts.test << " test images, 4 annotator masks each\n";
  } else {
    data::BratsLikeOptions options;
    if (flags.cases > 0) options.cases = flags.cases;
    options.seed = flags.seed;
    if (!flags.shape.empty()) options.shape = flags.shape;
    const data::SplitCounts counts = data::write_brats_like(flags.out, options);
    std::cout << "wrote a brats-like data set to " << flags.out << ": " << counts.train
              << " train, " << counts.val << " valid, " << counts.test
              << " test volumes (train.csv, valid.csv, test.csv)\n";
  }
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto flags = std::make_shared<SynthFlags>();
  CLI::App* command = app.add_subcommand(
      "synth",
      "Write a synthetic data set in the layout of a real one.\n"
      "lidc-like: the LIDC crops layout (<split>/images/<patient>/<slice>.png,\n"
      "<split>/gt/<patient>/<slice>_l1..4.png), lesion-like blobs whose four annotators disagree\n"
      "on the boundary and on faint lesions; 1000 images by default, split 8:1:1 by patient.\n"
      "brats-like: 4-channel NIfTI volumes (flair, t1, t1ce, t2) with nested tumour regions\n"
      "(1 necrotic core, 2 oedema, 3 enhancing), a brain mask and a non-trivial geometry, indexed\n"
      "by train.csv, valid.csv and test.csv in the reference's CSV layout; 30 cases by default,\n"
      "split 6:2:2.");
  command->footer(
      "Examples:\n  ssn synth --kind lidc-like --out data/lidc_like --cases 1000\n"
      "  ssn synth --kind brats-like --out data/brats_like --cases 30");
  command->add_option("--kind", flags->kind, "Data set kind")
      ->required()
      ->check(CLI::IsMember({"lidc-like", "brats-like"}));
  command->add_option("--out", flags->out, "Output folder (must not exist, or be empty)")
      ->required();
  command->add_option("--cases", flags->cases, "Images (lidc-like) or volumes (brats-like)")
      ->check(CLI::Range(int64_t{3}, int64_t{1000000}));
  command->add_option("--seed", flags->seed, "Random seed")->check(seed())->capture_default_str();
  command
      ->add_option("--shape", flags->shape,
                   "brats-like: volume size D,H,W in voxels (default 48,64,56)")
      ->delimiter(',')
      ->expected(3);
  command->callback([flags]() { run_synth(*flags); });
}

}  // namespace ssn::cli
