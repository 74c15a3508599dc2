#include "ssn/data/nnunet.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "ssn/data/splits.h"
#include "ssn/data/volumes.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"

namespace fs = std::filesystem;

namespace ssn::data {

namespace {

// What dataset.json says: the channel names (lower-cased, spaces as '_'), the number of classes
// and the file ending.
struct Description {
  std::vector<std::string> channels;
  int64_t num_classes = 0;
  std::string ending;
};

Description read_description(const fs::path& dataset) {
  const fs::path json_path = dataset / "dataset.json";
  TORCH_CHECK(fs::is_regular_file(json_path), dataset.string(),
              " is not an nnU-Net raw dataset: no dataset.json");
  nlohmann::json description;
  {
    std::ifstream in(json_path);
    description = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }
  TORCH_CHECK(!description.is_discarded() && description.is_object(), json_path.string(),
              " is not valid JSON");
  const nlohmann::json& names = description.contains("channel_names")
                                    ? description["channel_names"]
                                    : description.value("modality", nlohmann::json());
  TORCH_CHECK(names.is_object() && !names.empty(), json_path.string(),
              ": expected \"channel_names\" (or \"modality\"), an object {\"0\": \"T1\", ...}");
  TORCH_CHECK(description.contains("labels") && description["labels"].is_object() &&
                  !description["labels"].empty(),
              json_path.string(), ": expected \"labels\", an object of the classes");
  Description result;
  result.ending = description.value("file_ending", std::string(".nii.gz"));
  result.num_classes = static_cast<int64_t>(description["labels"].size());
  for (size_t c = 0; c < names.size(); ++c) {
    const std::string key = std::to_string(c);
    TORCH_CHECK(names.contains(key) && names[key].is_string(), json_path.string(),
                ": channel_names has no entry \"", key, "\" (channels are numbered from 0)");
    std::string name = names[key].get<std::string>();
    for (char& ch : name) ch = ch == ' ' ? '_' : static_cast<char>(std::tolower(ch));
    result.channels.push_back(name);
  }
  return result;
}

// The cases of a folder of images: the ids of its <id>_0000<ending> files (none if it is absent).
std::set<std::string> image_ids(const fs::path& folder, const std::string& ending) {
  std::set<std::string> ids;
  const std::string first = "_0000" + ending;
  if (!fs::is_directory(folder)) return ids;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > first.size() &&
        name.compare(name.size() - first.size(), first.size(), first) == 0) {
      ids.insert(name.substr(0, name.size() - first.size()));
    }
  }
  return ids;
}

// The CT statistics nnU-Net (v2) collects: 10,000 foreground voxels (label > 0) drawn uniformly,
// with replacement, from each training case (seeded), then the 0.5 and 99.5 percentiles (linear, as
// numpy), the mean and the population standard deviation of all of them.
struct ForegroundIntensities {
  double lower = 0, upper = 0, mean = 0, std = 1;
  int64_t voxels = 0;
};

ForegroundIntensities foreground_intensities(
    const std::vector<std::pair<fs::path, fs::path>>& images, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> samples;
  for (const auto& [image_path, label_path] : images) {
    const at::Tensor image = io::read_image(image_path).to(at::kDouble).flatten();
    const at::Tensor label = io::read_label_image(label_path).flatten();
    TORCH_CHECK(image.numel() == label.numel(), image_path.string(), " has ", image.numel(),
                " voxels, its label ", label_path.string(), " ", label.numel());
    const at::Tensor foreground = image.masked_select(label.ne(0));
    if (foreground.numel() == 0) continue;
    samples.push_back(
        foreground.index_select(0, at::randint(foreground.numel(), {10000}, generator, at::kLong)));
  }
  TORCH_CHECK(!samples.empty(), "CT normalisation: no training case has a foreground voxel");
  const at::Tensor all = std::get<0>(at::cat(samples).sort());
  const auto percentile = [&](double p) {
    const double x = p / 100.0 * static_cast<double>(all.numel() - 1);
    const auto low = static_cast<int64_t>(x);
    const int64_t high = std::min<int64_t>(low + 1, all.numel() - 1);
    const double a = all[low].item<double>(), b = all[high].item<double>();
    return a + (b - a) * (x - static_cast<double>(low));
  };
  ForegroundIntensities f;
  f.lower = percentile(0.5);
  f.upper = percentile(99.5);
  f.mean = all.mean().item<double>();
  f.std = all.std(/*unbiased=*/false).item<double>();
  f.voxels = all.numel();
  return f;
}

}  // namespace

NnUnetIndex index_nnunet_raw(const fs::path& dataset, const fs::path& out,
                             const NnUnetIndexOptions& options) {
  const Description description = read_description(dataset);
  const std::string& ending = description.ending;
  const size_t channels = description.channels.size();
  NnUnetIndex index;
  index.num_classes = description.num_classes;
  index.channels = description.channels;
  const auto ends_with = [&](const std::string& name) {
    return name.size() > ending.size() &&
           name.compare(name.size() - ending.size(), ending.size(), ending) == 0;
  };
  // Rows "id,channel paths..." of the cases found in labelsTr (labelled) or imagesTs (unlabelled).
  const auto row = [&](const std::string& id, const fs::path& images) {
    std::string line = id;
    for (size_t c = 0; c < channels; ++c) {
      char suffix[32];
      std::snprintf(suffix, sizeof(suffix), "_%04zu", c);
      const fs::path channel = fs::absolute(images / (id + suffix + ending));
      TORCH_CHECK(fs::is_regular_file(channel), "case ", id, ": ", channel.string(),
                  " is missing (channel ", c, " of ", channels, ")");
      line += "," + channel.string();
    }
    return line;
  };
  std::vector<std::string> labelled, unlabelled;
  std::vector<std::pair<std::string, fs::path>> labelled_cases;  // id, label
  TORCH_CHECK(fs::is_directory(dataset / "labelsTr"), dataset.string(), ": no labelsTr/ folder");
  std::vector<fs::path> labels;
  for (const auto& entry : fs::directory_iterator(dataset / "labelsTr")) {
    if (ends_with(entry.path().filename().string())) labels.push_back(entry.path());
  }
  std::sort(labels.begin(), labels.end());
  for (const auto& label : labels) {
    const std::string name = label.filename().string();
    const std::string id = name.substr(0, name.size() - ending.size());
    labelled.push_back(row(id, dataset / "imagesTr") + "," + fs::absolute(label).string());
    labelled_cases.emplace_back(id, fs::absolute(label));
  }
  TORCH_CHECK(!labelled.empty(), dataset.string(), ": labelsTr/ holds no *", ending, " file");
  // Training images without a label are not dropped: they go to unlabelled.csv, for predict.
  std::set<std::string> with_labels;
  for (const auto& label : labels) {
    const std::string name = label.filename().string();
    with_labels.insert(name.substr(0, name.size() - ending.size()));
  }
  for (const auto& id : image_ids(dataset / "imagesTr", ending)) {
    if (with_labels.count(id)) continue;
    unlabelled.push_back(row(id, dataset / "imagesTr"));
    ++index.training_images_without_labels;
  }
  for (const auto& id : image_ids(dataset / "imagesTs", ending)) {
    unlabelled.push_back(row(id, dataset / "imagesTs"));
  }
  std::string header = "id";
  for (const auto& name : index.channels) header += "," + name;
  const Split split =
      split_cases(static_cast<int64_t>(labelled.size()), options.fractions, options.seed);
  index.train = static_cast<int64_t>(split.parts[0].size());
  index.valid = static_cast<int64_t>(split.parts[1].size());
  index.test = static_cast<int64_t>(split.parts[2].size());
  index.unlabelled = static_cast<int64_t>(unlabelled.size());
  // nnU-Net's intensity normalisation: CT channels from the training split's foreground.
  nlohmann::json normalisation = {{"format", "ssn-normalisation"}, {"version", 1}};
  normalisation["channels"] = nlohmann::json::object();
  for (size_t c = 0; c < channels; ++c) {
    const std::string& name = index.channels[c];
    if (name != "ct") {
      normalisation["channels"][name] = {{"scheme", "nonzero_zscore"}};
      continue;
    }
    std::vector<std::pair<fs::path, fs::path>> images;
    for (int64_t i : split.parts[0]) {
      const auto& [id, label] = labelled_cases[static_cast<size_t>(i)];
      char suffix[32];
      std::snprintf(suffix, sizeof(suffix), "_%04zu", c);
      images.emplace_back(fs::absolute(dataset / "imagesTr" / (id + suffix + ending)), label);
    }
    const ForegroundIntensities f = foreground_intensities(images, options.seed);
    normalisation["channels"][name] = {{"scheme", "ct"}, {"lower", f.lower}, {"upper", f.upper},
                                       {"mean", f.mean}, {"std", f.std},     {"voxels", f.voxels}};
    index.ct_channels.push_back(name);
  }
  io::write_folder_atomically(out, "output folder", [&](const fs::path& staging) {
    io::write_text_file(staging / kNormalisationFile, normalisation.dump(2) + "\n");
    std::string csv[3] = {header + ",seg\n", header + ",seg\n", header + ",seg\n"};
    for (size_t part = 0; part < 3; ++part) {
      for (int64_t i : split.parts[part]) csv[part] += labelled[static_cast<size_t>(i)] + "\n";
    }
    io::write_text_file(staging / "train.csv", csv[0]);
    io::write_text_file(staging / "valid.csv", csv[1]);
    io::write_text_file(staging / "test.csv", csv[2]);
    if (!unlabelled.empty()) {
      std::string text = header + "\n";
      for (const auto& line : unlabelled) text += line + "\n";
      io::write_text_file(staging / "unlabelled.csv", text);
    }
  });
  return index;
}

}  // namespace ssn::data
