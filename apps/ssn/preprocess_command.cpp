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
      "Example:\n  ssn preprocess-brats --input-dir MICCAI_BraTS17_Data_Training --output-dir "
      "data/brats17");
  command->add_option("--input-dir", *input, "The BraTS training data folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  command->add_option("--output-dir", *output, "Output folder (must not exist or be empty)")
      ->required();
  add_split_options(command, options->fractions, options->seed, "cases");
  command->callback([options, input, output]() {
    const data::PreprocessCounts counts = data::preprocess_brats(*input, *output, *options);
    std::printf("wrote %lld train, %lld valid and %lld test cases to %s (data_index_*.csv)\n",
                static_cast<long long>(counts.train), static_cast<long long>(counts.valid),
                static_cast<long long>(counts.test), output->c_str());
  });
}

}  // namespace ssn::cli
