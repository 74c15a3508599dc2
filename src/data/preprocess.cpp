#include "ssn/data/preprocess.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <numeric>
#include <set>
#include <sstream>

#include "ssn/data/splits.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"

namespace ssn::data {
namespace fs = std::filesystem;

at::Tensor z_score_normalise(const at::Tensor& channel, const at::Tensor& brain) {
  TORCH_CHECK(channel.sizes() == brain.sizes(), "z-score: channel ", channel.sizes(),
              " and brain mask ", brain.sizes(), " differ in shape");
  const at::Tensor values = channel.to(at::kDouble);
  const at::Tensor inside = values.masked_select(brain);
  TORCH_CHECK(inside.numel() > 0, "z-score: the brain mask is empty");
  const at::Tensor sorted = std::get<0>(inside.sort());
  const auto percentile = [&](double p) {
    const double position = p / 100.0 * static_cast<double>(sorted.numel() - 1);
    const auto low = static_cast<int64_t>(std::floor(position));
    const int64_t high = std::min<int64_t>(low + 1, sorted.numel() - 1);
    const double a = sorted[low].item<double>(), b = sorted[high].item<double>();
    return a + (b - a) * (position - static_cast<double>(low));
  };
  const double low = percentile(5.0), high = percentile(95.0);
  const at::Tensor selected = brain.logical_and(values > low)
                                  .logical_and(values < high)
                                  .logical_and(values > values.mean());
  const at::Tensor kept = values.masked_select(selected);
  TORCH_CHECK(kept.numel() > 0,
              "z-score: no brain voxel lies strictly between the 5th and 95th "
              "percentiles and above the mean");
  const double mean = kept.mean().item<double>();
  const double deviation = kept.std(/*unbiased=*/false).item<double>();
  TORCH_CHECK(deviation > 0, "z-score: the selected voxels are constant");
  return ((values - mean) / deviation).to(at::kFloat);
}

PreprocessCounts preprocess_brats(const fs::path& input_dir, const fs::path& output_dir,
                                  const PreprocessOptions& options) {
  TORCH_CHECK(fs::is_directory(input_dir), "input folder ", input_dir.string(), ": no such folder");
  check_fractions(options.fractions);
  // Case folders: every <dir>/<name>/<name>_flair.nii.gz.
  std::vector<fs::path> cases;
  for (const auto& entry : fs::recursive_directory_iterator(input_dir)) {
    const std::string name = entry.path().filename().string();
    const std::string suffix = "_flair.nii.gz";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      cases.push_back(fs::relative(entry.path(), input_dir).parent_path() /
                      name.substr(0, name.size() - suffix.size()));
    }
  }
  std::sort(cases.begin(), cases.end());
  TORCH_CHECK(!cases.empty(), "input folder ", input_dir.string(),
              " holds no case (<case>_flair.nii.gz with t1, t1ce, t2 and seg next to it)");
  PreprocessCounts counts;
  // The parts of the split as indices into `cases` (paper: the lists' order; random: drawn later).
  std::array<std::vector<int64_t>, 3> paper_parts;
  if (options.paper_split) {
    std::vector<fs::path> listed;
    std::vector<std::string> missing;
    std::set<fs::path> present(cases.begin(), cases.end());
    for (size_t part = 0; part < 3; ++part) {
      for (const std::string& id : brats2017_paper_split(part)) {
        if (!present.count(fs::path(id))) missing.push_back(id);
        paper_parts[part].push_back(static_cast<int64_t>(listed.size()));
        listed.emplace_back(id);
      }
    }
    if (!missing.empty()) {
      std::ostringstream list;
      for (size_t i = 0; i < missing.size(); ++i) list << (i ? ", " : "") << missing[i];
      TORCH_CHECK(false, "--split paper: ", missing.size(), " of the paper's ", listed.size(),
                  " BraTS 2017 cases are not in ", input_dir.string(),
                  " (expected <id>_flair.nii.gz for each id; the reference lays them out as "
                  "HGG/<case>/<case>_*.nii.gz and LGG/...): ",
                  list.str());
    }
    counts.left_out = static_cast<int64_t>(cases.size() - listed.size());
    cases = listed;
  }
  io::write_folder_atomically(output_dir, "output folder", [&](const fs::path& staging) {
    const char* channels[4] = {"flair", "t1", "t1ce", "t2"};
    std::vector<std::string> rows;
    for (const auto& id : cases) {
      const auto source = [&](const std::string& suffix) {
        const fs::path path = input_dir / (id.string() + "_" + suffix + ".nii.gz");
        TORCH_CHECK(fs::is_regular_file(path), "case ", id.string(), ": ", path.string(),
                    " is missing");
        return path;
      };
      const auto target = [&](const std::string& suffix) {
        return staging / (id.string() + "_" + suffix + ".nii.gz");
      };
      fs::create_directories(target("x").parent_path());
      const io::Image seg = io::read_image_with_geometry(source("seg"));
      at::Tensor labels = seg.pixels.to(at::kLong);
      labels.masked_fill_(labels.eq(4), 3);  // BraTS' enhancing tumour label 4 becomes class 3
      io::write_label_image(target("seg"), labels, seg.geometry);
      const io::Image t1 = io::read_image_with_geometry(source("t1"));
      const at::Tensor brain = t1.pixels > 0;
      io::write_label_image(target("brain_mask"), brain.to(at::kLong), t1.geometry);
      std::ostringstream row;
      row << id.string();
      for (const char* channel : channels) {
        const io::Image image = io::read_image_with_geometry(source(channel));
        TORCH_CHECK(image.pixels.sizes() == brain.sizes(), "case ", id.string(), ": ",
                    source(channel).string(), " has shape ", image.pixels.sizes(),
                    ", but the t1 has ", brain.sizes());
        io::write_float_image(target(channel), z_score_normalise(image.pixels, brain),
                              image.geometry);
        row << "," << id.string() << "_" << channel << ".nii.gz";
      }
      row << "," << id.string() << "_seg.nii.gz," << id.string() << "_brain_mask.nii.gz";
      rows.push_back(row.str());
    }
    const std::array<std::vector<int64_t>, 3> parts =
        options.paper_split
            ? paper_parts
            : split_cases(static_cast<int64_t>(rows.size()), options.fractions, options.seed).parts;
    counts.train = static_cast<int64_t>(parts[0].size());
    counts.valid = static_cast<int64_t>(parts[1].size());
    counts.test = static_cast<int64_t>(parts[2].size());
    std::ostringstream csv[3];
    for (auto& file : csv) file << "id,flair,t1,t1ce,t2,seg,sampling_mask\n";
    for (size_t part = 0; part < 3; ++part) {
      for (int64_t i : parts[part]) csv[part] << rows[static_cast<size_t>(i)] << "\n";
    }
    io::write_text_file(staging / "data_index_train.csv", csv[0].str());
    io::write_text_file(staging / "data_index_valid.csv", csv[1].str());
    io::write_text_file(staging / "data_index_test.csv", csv[2].str());
  });
  return counts;
}

}  // namespace ssn::data
