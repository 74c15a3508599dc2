// ssn convert-lidc: data_lidc.pickle or data_lidc.hdf5 into the LIDC crops layout.

#include <cstdio>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "progress.h"
#include "ssn/data/lidc_convert.h"

namespace ssn::cli {
namespace {

struct ConvertLidcFlags {
  std::string input, out;
  uint64_t seed = 0;
};

}  // namespace

void add_convert_lidc_command(CLI::App& app) {
  auto flags = std::make_shared<ConvertLidcFlags>();
  CLI::App* command = app.add_subcommand(
      "convert-lidc",
      "Convert the LIDC file you hold into the LIDC crops layout that train and predict\n"
      "--data-dir read: data_lidc.pickle (Probabilistic U-Net PyTorch port; split here by\n"
      "series_uid: 20% of the patients test, 20% of the rest val, seeded) or data_lidc.hdf5\n"
      "(PHiSeg; its train/val/test split kept). Masks are written exactly (0/255 PNG), images as\n"
      "16-bit PNG with their linear map in DIR/lidc_conversion.json. The pickle is read without\n"
      "running it: only plain data and NumPy arrays are built.");
  command->footer(
      "Examples:\n  ssn convert-lidc --input data_lidc.pickle --out data/lidc --seed 0\n"
      "  ssn convert-lidc --input data_lidc.hdf5 --out data/lidc_phiseg");
  command->add_option("--input", flags->input, "data_lidc.pickle or data_lidc.hdf5")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--out", flags->out, "Folder to write (must not exist or be empty)")
      ->required();
  command->add_option("--seed", flags->seed, "Seeds the patient split of a pickle")
      ->check(seed())
      ->capture_default_str();
  command->callback([flags]() {
    data::ConvertLidcOptions options;
    options.seed = flags->seed;
    ProgressBar bar("convert-lidc");
    options.progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
    const data::ConvertLidcSummary s = data::convert_lidc(flags->input, flags->out, options);
    auto count = [](const std::map<std::string, int64_t>& m, const char* k) {
      const auto found = m.find(k);
      return static_cast<long long>(found == m.end() ? 0 : found->second);
    };
    std::printf(
        "converted %s (%s): train %lld slices of %lld patients, val %lld of %lld, test %lld of "
        "%lld, %lld annotators; images 16-bit (source = %.9g + %.9g * png) in %s\n",
        flags->input.c_str(), s.format.c_str(), count(s.slices, "train"),
        count(s.patients, "train"), count(s.slices, "val"), count(s.patients, "val"),
        count(s.slices, "test"), count(s.patients, "test"), static_cast<long long>(s.annotators),
        s.offset, s.scale, flags->out.c_str());
    if (s.patients_in_two_splits > 0) {
      std::printf(
          "warning: %lld patients have slices in more than one split of %s (its own split, "
          "kept as it is)\n",
          static_cast<long long>(s.patients_in_two_splits), flags->input.c_str());
    }
  });
}

}  // namespace ssn::cli
