// ssn import-checkpoint and ssn export-checkpoint: PyTorch state_dicts in and out.

#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "flags.h"
#include "ssn/config/config.h"
#include "ssn/io/atomic_file.h"
#include "ssn/train/pytorch_checkpoint.h"

namespace ssn::cli {
namespace {

namespace fs = std::filesystem;

struct ImportFlags {
  std::string pytorch, config_file, out, job_dir;
  uint64_t seed = 0;
};

struct ExportFlags {
  std::string checkpoint, pytorch;
};

void check_new_file(const std::string& path, const std::string& flag) {
  TORCH_CHECK(!fs::exists(path), flag, " ", path,
              " already exists: ssn does not overwrite it (remove it or choose another name)");
}

}  // namespace

void add_import_checkpoint_command(CLI::App& app) {
  auto flags = std::make_shared<ImportFlags>();
  CLI::App* command = app.add_subcommand(
      "import-checkpoint",
      "Read a PyTorch torch.save file (a state_dict, or a checkpoint dict whose 'state_dict' or\n"
      "'model' entry is one; zip or legacy format) of the reference's StochasticDeepMedic or of\n"
      "ssn's own models, check every tensor's name and shape against the model of --config-file,\n"
      "and write an ssn checkpoint that predict and train --resume take. The file is\n"
      "read without running it: globals other than OrderedDict, tensors and storages are refused.");
  command->footer(
      "Examples:\n  ssn import-checkpoint --pytorch saved_models/model_last.torch_model "
      "--config-file rank_10_mc_20_patch_110.json --out brats_ssn.pt\n"
      "  ssn import-checkpoint --pytorch unet.pt --config-file lidc.json --job-dir runs/lidc_more"
      "\n  ssn train --config-file lidc.json --data-dir data/lidc --job-dir runs/lidc_more "
      "--resume");
  command->add_option("--pytorch", flags->pytorch, "The torch.save file")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--config-file", flags->config_file, "The ssn config of the model")
      ->required()
      ->check(CLI::ExistingFile);
  auto* out =
      command->add_option("--out", flags->out, "The ssn checkpoint to write (must not exist)");
  auto* job = command->add_option(
      "--job-dir", flags->job_dir,
      "Or: a new job folder to continue training in (ssn train --resume --job-dir): gets\n"
      "checkpoint_last.pt and the config as config.json");
  out->excludes(job);
  command
      ->add_option("--seed", flags->seed,
                   "Seeds the checkpoint's generators, as train --random-seeds")
      ->check(seed())
      ->capture_default_str();
  command->callback([flags]() {
    if (flags->out.empty() && flags->job_dir.empty())
      throw CLI::RequiredError("--out or --job-dir");
    const config::Config config = config::load_config(flags->config_file);
    fs::path out = flags->out;
    if (!flags->job_dir.empty()) {
      const fs::path job = flags->job_dir;
      check_new_file((job / "checkpoint_last.pt").string(), "--job-dir");
      check_new_file((job / "config.json").string(), "--job-dir");
      std::error_code error;
      fs::create_directories(job, error);
      TORCH_CHECK(!error && fs::is_directory(job), "cannot create the folder given by --job-dir (",
                  job.string(), ")");
      out = job / "checkpoint_last.pt";
    } else {
      check_new_file(flags->out, "--out");
    }
    const train::ImportSummary summary =
        train::import_pytorch_checkpoint(flags->pytorch, config, out, flags->seed);
    if (!flags->job_dir.empty()) {
      io::write_text_file(fs::path(flags->job_dir) / "config.json", config.source.dump(2) + "\n");
    }
    std::printf("imported %zu tensors (%s%s) into %s\n", summary.tensors,
                summary.naming == train::PytorchNaming::kReference ? "the reference's names"
                                                                   : "ssn's names",
                summary.entry.empty() ? "" : (", entry '" + summary.entry + "'").c_str(),
                out.c_str());
  });
}

void add_export_checkpoint_command(CLI::App& app) {
  auto flags = std::make_shared<ExportFlags>();
  CLI::App* command = app.add_subcommand(
      "export-checkpoint",
      "Write the weights of an ssn checkpoint as a PyTorch state_dict (torch.save format, an\n"
      "OrderedDict of tensors). A low-rank DeepMedic gets the reference's names, so that\n"
      "StochasticDeepMedic(...).load_state_dict(torch.load(OUT)) works; other models keep ssn's.");
  command->footer(
      "Example:\n  ssn export-checkpoint --checkpoint runs/brats/checkpoint_best.pt --pytorch "
      "brats_ssn.pt");
  command->add_option("--checkpoint", flags->checkpoint, "The ssn checkpoint")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--pytorch", flags->pytorch, "The PyTorch file to write (must not exist)")
      ->required();
  command->callback([flags]() {
    check_new_file(flags->pytorch, "--pytorch");
    const train::ExportSummary summary =
        train::export_pytorch_checkpoint(flags->checkpoint, flags->pytorch);
    std::printf("exported %zu tensors (%s) to %s\n", summary.tensors,
                summary.naming == train::PytorchNaming::kReference ? "the reference's names"
                                                                   : "ssn's names",
                flags->pytorch.c_str());
  });
}

}  // namespace ssn::cli
