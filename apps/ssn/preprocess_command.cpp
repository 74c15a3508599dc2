// ssn preprocess-brats: the reference's BraTS preprocessing, from the challenge's folders to the
// CSV index that ssn train reads.

#include <cstdio>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/data/preprocess.h"

namespace ssn::cli {

void add_preprocess_command(CLI::App& app) {
  auto options = std::make_shared<data::PreprocessOptions>();
  auto input = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "preprocess-brats",
      "Preprocess BraTS as the reference does: every <case>_{flair,t1,t1ce,t2,seg}.nii.gz under\n"
      "--input-dir (HGG/<case>/, LGG/<case>/) -> labels 4 -> 3, brain mask t1 > 0, each channel\n"
      "z-scored with the mean and deviation of the brain voxels strictly between its 5th and 95th\n"
      "brain percentiles and above its mean; written with the inputs' geometry to --output-dir\n"
      "with data_index_{train,valid,test}.csv for ssn train / predict.");
  command->footer(
      "Examples:\n  ssn preprocess-brats --input-dir MICCAI_BraTS17_Data_Training --output-dir "
      "data/brats17 --split paper\n"
      "  ssn preprocess-brats --input-dir my_brats --output-dir data/mine --fractions 0.7,0.1,0.2");
  command->add_option("--input-dir", *input, "The BraTS training data folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  command->add_option("--output-dir", *output, "Output folder (must not exist or be empty)")
      ->required();
  add_split_options(command, options->fractions, options->seed, "cases");
  auto split = std::make_shared<std::string>("random");
  command
      ->add_option("--split", *split,
                   "random: --fractions drawn with --seed; paper: the SSN paper's fixed BraTS 2017 "
                   "lists (171 train, 28 valid, 86 test ids of the reference's "
                   "evaluation/preprocessing.py), other cases left out")
      ->check(CLI::IsMember({"random", "paper"}))
      ->capture_default_str();
  command->callback([options, input, output, split, command]() {
    options->paper_split = *split == "paper";
    if (options->paper_split &&
        (command->count("--fractions") > 0 || command->count("--seed") > 0)) {
      throw CLI::ValidationError("--split paper",
                                 "takes no --fractions or --seed (its lists are fixed)");
    }
    const data::PreprocessCounts counts = data::preprocess_brats(*input, *output, *options);
    std::printf("wrote %lld train, %lld valid and %lld test cases to %s (data_index_*.csv)",
                static_cast<long long>(counts.train), static_cast<long long>(counts.valid),
                static_cast<long long>(counts.test), output->c_str());
    if (options->paper_split) {
      std::printf("; the paper's split, %lld case(s) of the input in none of its lists left out",
                  static_cast<long long>(counts.left_out));
    }
    std::printf("\n");
  });
}

}  // namespace ssn::cli
