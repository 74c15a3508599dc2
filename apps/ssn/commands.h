#pragma once

// Each subcommand lives in its own file and registers itself on the top-level app. A subcommand
// declares its flags, validates them, calls one library function and reports the result.

#include <CLI/CLI.hpp>

namespace ssn::cli {

void add_toy_command(CLI::App& app);
void add_evaluate_command(CLI::App& app);
void add_benchmark_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_model_command(CLI::App& app);
void add_preprocess_command(CLI::App& app);
void add_index_nnunet_command(CLI::App& app);
void add_convert_lidc_command(CLI::App& app);
void add_import_checkpoint_command(CLI::App& app);
void add_export_checkpoint_command(CLI::App& app);

}  // namespace ssn::cli
