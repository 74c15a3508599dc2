// ssn index-nnunet: a dataset in the nnU-Net raw layout as the CSV indexes that ssn train and
// ssn predict read; the images stay in place.

#include <cstdio>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/data/nnunet.h"

namespace ssn::cli {

void add_index_nnunet_command(CLI::App& app) {
  auto options = std::make_shared<data::NnUnetIndexOptions>();
  auto dataset = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "index-nnunet",
      "Index a dataset in the nnU-Net raw layout (dataset.json, imagesTr/<case>_0000.nii.gz ...,\n"
      "labelsTr/<case>.nii.gz, optionally imagesTs/) as the CSV files ssn train / predict read:\n"
      "train.csv, valid.csv, test.csv (labelled cases split by --fractions) and unlabelled.csv\n"
      "(imagesTs, and imagesTr cases without a label). Columns are named after dataset.json's\n"
      "channel_names (lower case); the images stay where they are (absolute paths). Put the\n"
      "printed channel names in the config's data.channels. normalisation.json next to them\n"
      "makes train and predict normalise as nnU-Net: a CT channel clipped to the 0.5 .. 99.5\n"
      "percentiles of the training foreground and z-scored with its statistics (computed here),\n"
      "any other channel z-scored per image over its non-zero voxels.");
  command->footer(
      "Example:\n  ssn index-nnunet --dataset-dir nnUNet_raw/Dataset001_BrainTumour --out "
      "data/brain_tumour");
  command->add_option("--dataset-dir", *dataset, "The nnU-Net raw dataset folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  command->add_option("--out", *out, "Folder for the CSV files (must not exist or be empty)")
      ->required();
  add_split_options(command, options->fractions, options->seed, "labelled cases");
  command->callback([options, dataset, out]() {
    const data::NnUnetIndex index = data::index_nnunet_raw(*dataset, *out, *options);
    std::string channels;
    for (const auto& name : index.channels) channels += (channels.empty() ? "" : ", ") + name;
    std::printf(
        "indexed %lld train, %lld valid, %lld test and %lld unlabelled cases in %s\n"
        "channels (data.channels): %s; %lld classes (model num_classes); target column: "
        "seg\n",
        static_cast<long long>(index.train), static_cast<long long>(index.valid),
        static_cast<long long>(index.test), static_cast<long long>(index.unlabelled), out->c_str(),
        channels.c_str(), static_cast<long long>(index.num_classes));
    std::string ct;
    for (const auto& name : index.ct_channels) ct += (ct.empty() ? "" : ", ") + name;
    std::printf(
        "normalisation (normalisation.json): %s%s\n",
        ct.empty()
            ? ""
            : ("CT statistics of the training foreground for " + ct + "; other channels ").c_str(),
        "z-score per image over the non-zero voxels");
    if (index.training_images_without_labels > 0) {
      std::printf(
          "note: %lld case(s) of imagesTr have no label in labelsTr: they are in unlabelled.csv "
          "(for ssn predict), not in the training splits\n",
          static_cast<long long>(index.training_images_without_labels));
    }
  });
}

}  // namespace ssn::cli
