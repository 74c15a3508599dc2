#include "ssn/data/volumes.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "ssn/io/atomic_file.h"
#include "ssn/io/csv.h"

namespace ssn::data {
namespace fs = std::filesystem;

namespace {

// normalisation.json: {"format": "ssn-normalisation", "version": 1, "channels": {"<column>":
// {"scheme": "ct", "lower", "upper", "mean", "std"} | {"scheme": "nonzero_zscore"} | {"scheme":
// "none"}}} -> one entry per requested column (none for a column it does not list).
std::vector<ChannelNormalisation> read_normalisation(const fs::path& file,
                                                     const std::vector<std::string>& columns) {
  const std::string where = file.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_text_file(file));
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, where, ": not valid JSON (", e.what(), ")");
  }
  TORCH_CHECK(
      j.is_object() && j.value("format", "") == "ssn-normalisation" && j.value("version", 0) == 1 &&
          j.contains("channels") && j["channels"].is_object(),
      where, ": expected {\"format\": \"ssn-normalisation\", \"version\": 1, \"channels\": {...}}");
  std::vector<ChannelNormalisation> result;
  for (const auto& column : columns) {
    ChannelNormalisation n;
    if (j["channels"].contains(column)) {
      const auto& entry = j["channels"][column];
      const std::string scheme = entry.is_object() ? entry.value("scheme", "") : "";
      if (scheme == "ct") {
        n.kind = ChannelNormalisation::Kind::kCt;
        for (auto [key, value] : {std::pair{"lower", &n.lower}, std::pair{"upper", &n.upper},
                                  std::pair{"mean", &n.mean}, std::pair{"std", &n.std}}) {
          TORCH_CHECK(entry.contains(key) && entry[key].is_number(), where, ": field channels.",
                      column, ".", key, ": expected a number");
          *value = entry[key].get<double>();
        }
        TORCH_CHECK(n.lower <= n.upper && n.std >= 0, where, ": field channels.", column,
                    ": expected lower <= upper and std >= 0");
      } else if (scheme == "nonzero_zscore") {
        n.kind = ChannelNormalisation::Kind::kNonzeroZscore;
      } else {
        TORCH_CHECK(scheme == "none", where, ": field channels.", column,
                    ".scheme: expected \"ct\", \"nonzero_zscore\" or \"none\", got \"", scheme,
                    "\"");
      }
    }
    result.push_back(n);
  }
  return result;
}

}  // namespace

at::Tensor normalise_channel(const at::Tensor& values, const ChannelNormalisation& n) {
  using Kind = ChannelNormalisation::Kind;
  if (n.kind == Kind::kCt) {
    return (values.clamp(n.lower, n.upper) - n.mean) / std::max(n.std, 1e-8);
  }
  if (n.kind == Kind::kNonzeroZscore) {
    const at::Tensor inside = values.ne(0);
    if (!inside.any().item<bool>()) return values;
    const at::Tensor selected = values.masked_select(inside).to(at::kDouble);
    const double mean = selected.mean().item<double>();
    const double std = selected.std(/*unbiased=*/false).item<double>();
    return at::where(inside, (values - mean) / std::max(std, 1e-8), at::zeros_like(values));
  }
  return values;
}

std::vector<VolumeCase> read_case_csv(const fs::path& csv, const CsvColumns& columns) {
  const io::CsvTable table = io::read_csv(csv);
  std::vector<std::string> required = {"id"};
  required.insert(required.end(), columns.channels.begin(), columns.channels.end());
  if (!columns.target.empty()) required.push_back(columns.target);
  for (const auto& name : required) {
    TORCH_CHECK(table.column.count(name), csv.string(), ": the header has no column '", name,
                "' (the config's data section names the columns id, channels ", "and target)");
  }
  const bool has_mask = !columns.sampling_mask.empty() && table.column.count(columns.sampling_mask);
  const fs::path folder = csv.parent_path();
  const auto resolve = [&](size_t row, const std::string& column) {
    const std::string& field = table.field(row, column);
    TORCH_CHECK(!field.empty(), csv.string(), " line ", table.line_numbers[row], ": column '",
                column, "' is empty");
    const fs::path path = fs::path(field).is_absolute() ? fs::path(field) : folder / field;
    TORCH_CHECK(fs::is_regular_file(path), csv.string(), " line ", table.line_numbers[row],
                ": column '", column, "' names ", path.string(), ", which does not exist");
    return path;
  };
  std::vector<VolumeCase> cases;
  std::set<std::string> ids;
  for (size_t row = 0; row < table.rows.size(); ++row) {
    VolumeCase c;
    c.id = table.field(row, "id");
    TORCH_CHECK(!c.id.empty(), csv.string(), " line ", table.line_numbers[row], ": empty id");
    TORCH_CHECK(ids.insert(c.id).second, csv.string(), " line ", table.line_numbers[row],
                ": duplicate id '", c.id, "'");
    for (const auto& channel : columns.channels) c.channels.push_back(resolve(row, channel));
    if (!columns.target.empty()) c.target = resolve(row, columns.target);
    if (has_mask) c.mask = resolve(row, columns.sampling_mask);
    cases.push_back(std::move(c));
  }
  TORCH_CHECK(!cases.empty(), csv.string(), " lists no cases");
  const fs::path normalisation_file = csv.parent_path() / kNormalisationFile;
  if (fs::is_regular_file(normalisation_file)) {
    const std::vector<ChannelNormalisation> n =
        read_normalisation(normalisation_file, columns.channels);
    for (auto& c : cases) c.normalisation = n;
  }
  return cases;
}

Volume load_volume(const VolumeCase& c, int64_t num_classes, int64_t dimensions) {
  Volume volume;
  volume.id = c.id;
  std::vector<at::Tensor> channels;
  for (const auto& path : c.channels) {
    io::Image image = io::read_image_with_geometry(path);
    TORCH_CHECK(dimensions == 0 || image.pixels.dim() == dimensions, "case ", c.id, ": ",
                path.string(), " has ", image.pixels.dim(), " axes ", image.pixels.sizes(),
                ", but the model works on ", dimensions, "-D images (one file per channel)");
    if (channels.empty()) {
      volume.geometry = image.geometry;
    } else {
      TORCH_CHECK(image.pixels.sizes() == channels.front().sizes(), "case ", c.id, ": ",
                  path.string(), " has shape ", image.pixels.sizes(), ", but ",
                  c.channels.front().string(), " has ", channels.front().sizes());
      TORCH_CHECK(image.geometry.matches(volume.geometry), "case ", c.id, ": ", path.string(),
                  " has another geometry than ", c.channels.front().string(), " (",
                  image.geometry.describe(), " vs ", volume.geometry.describe(), ")");
    }
    at::Tensor values = image.pixels.to(at::kFloat);
    TORCH_CHECK(values.isfinite().all().item<bool>(), "case ", c.id, ": ", path.string(),
                " holds NaN or infinite voxels");
    if (!c.normalisation.empty()) {
      values = normalise_channel(values, c.normalisation[channels.size()]);
    }
    channels.push_back(values);
  }
  volume.image = at::stack(channels);
  const auto spatial = channels.front().sizes();
  const auto check_aligned = [&](const fs::path& path, const io::Image& image) {
    TORCH_CHECK(image.pixels.sizes() == spatial, "case ", c.id, ": ", path.string(), " has shape ",
                image.pixels.sizes(), ", but the channels have ", spatial);
    TORCH_CHECK(image.geometry.matches(volume.geometry), "case ", c.id, ": ", path.string(),
                " has another geometry than the channels (", image.geometry.describe(), " vs ",
                volume.geometry.describe(), ")");
  };
  if (!c.target.empty()) {
    const io::Image target = io::read_image_with_geometry(c.target);
    check_aligned(c.target, target);
    at::Tensor labels = target.pixels;
    if (labels.is_floating_point()) {
      TORCH_CHECK(labels.eq(labels.round()).all().item<bool>(), "case ", c.id, ": ",
                  c.target.string(), " holds non-integer labels");
    }
    labels = labels.to(at::kLong);
    const int64_t low = labels.min().item<int64_t>(), high = labels.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < num_classes, "case ", c.id, ": ", c.target.string(),
                " holds labels in [", low, ", ", high, "], expected class indices in [0, ",
                num_classes, ")");
    volume.target = labels;
  }
  if (!c.mask.empty()) {
    const io::Image mask = io::read_image_with_geometry(c.mask);
    check_aligned(c.mask, mask);
    volume.mask = mask.pixels.ne(0);
  } else {
    volume.mask = at::ones(spatial, at::kBool);
  }
  return volume;
}

at::Tensor crop_padded(const at::Tensor& x, const std::vector<int64_t>& start,
                       const std::vector<int64_t>& size) {
  const int64_t dims = static_cast<int64_t>(size.size());
  const int64_t lead = x.dim() - dims;
  TORCH_CHECK(lead >= 0 && start.size() == size.size(), "crop: a region of ", dims,
              " axes does not fit a tensor ", x.sizes());
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().begin() + lead);
  shape.insert(shape.end(), size.begin(), size.end());
  at::Tensor out = at::zeros(shape, x.options());
  at::Tensor source = x, target = out;
  for (int64_t d = 0; d < dims; ++d) {
    const int64_t axis = lead + d;
    const int64_t low = std::max<int64_t>(0, start[d]);
    const int64_t high = std::min<int64_t>(x.size(axis), start[d] + size[d]);
    if (high <= low) return out;  // no overlap
    source = source.narrow(axis, low, high - low);
    target = target.narrow(axis, low - start[d], high - low);
  }
  target.copy_(source);
  return out;
}

Patch extract_patch(const Volume& volume, const std::vector<int64_t>& centre,
                    const std::vector<int64_t>& input_size,
                    const std::vector<int64_t>& output_size) {
  std::vector<int64_t> in_start, out_start;
  for (size_t d = 0; d < centre.size(); ++d) {
    in_start.push_back(centre[d] - input_size[d] / 2);
    out_start.push_back(centre[d] - output_size[d] / 2);
  }
  Patch patch;
  patch.image = crop_padded(volume.image, in_start, input_size);
  patch.target = volume.target.defined() ? crop_padded(volume.target, out_start, output_size)
                                         : at::zeros(output_size, at::kLong);
  patch.mask = crop_padded(volume.mask, out_start, output_size);
  return patch;
}

namespace {

// A uniformly drawn voxel index of a non-empty boolean map, as coordinates.
std::vector<int64_t> random_voxel(const at::Tensor& where, at::Generator& generator) {
  const at::Tensor flat = where.reshape({-1}).nonzero().reshape({-1});
  const int64_t pick =
      at::randint(flat.numel(), {1}, generator, at::TensorOptions(at::kLong)).item<int64_t>();
  int64_t index = flat[pick].item<int64_t>();
  std::vector<int64_t> voxel(where.dim());
  for (int64_t d = where.dim() - 1; d >= 0; --d) {
    voxel[d] = index % where.size(d);
    index /= where.size(d);
  }
  return voxel;
}

double uniform(at::Generator& generator) {
  return at::rand({1}, generator, at::TensorOptions(at::kDouble)).item<double>();
}

}  // namespace

PatchSpec draw_patch(const Volume& volume, const PatchOptions& options, at::Generator& generator) {
  const auto dims = static_cast<int64_t>(options.input_size.size());
  for (int64_t axis : options.flip_axes) {
    TORCH_CHECK(axis >= 0 && axis < dims, "PatchOptions.flip_axes: expected spatial axes in 0..",
                dims - 1, ", got ", axis);
  }
  for (const auto& [first, second] : options.rotation_planes) {
    TORCH_CHECK(first >= 0 && first < dims && second >= 0 && second < dims && first != second,
                "PatchOptions.rotation_planes: expected pairs of different spatial axes in 0..",
                dims - 1, ", got (", first, ", ", second, ")");
  }
  TORCH_CHECK(volume.mask.any().item<bool>(), "case ", volume.id,
              ": the sampling mask is empty, no patch centre to draw");
  PatchSpec spec;
  // Foreground (target > 0) or background (target == 0) voxels inside the mask, as the coin says;
  // a case without voxels of the wanted kind falls back to any voxel of the mask.
  if (volume.target.defined()) {
    const bool foreground = uniform(generator) < options.foreground_probability;
    const at::Tensor wanted =
        (foreground ? volume.target.gt(0) : volume.target.eq(0)).logical_and(volume.mask);
    if (wanted.any().item<bool>()) spec.centre = random_voxel(wanted, generator);
  }
  if (spec.centre.empty()) spec.centre = random_voxel(volume.mask, generator);
  // Augmentation as the reference's patch_augmentation.
  spec.flip = !options.flip_axes.empty() && uniform(generator) < options.flip_probability;
  if (!options.rotation_planes.empty() && uniform(generator) < options.rotation_probability) {
    for (const auto& [first, second] : options.rotation_planes) {
      const int64_t turns = 1 + static_cast<int64_t>(uniform(generator) * 3);  // 90, 180 or 270
      const bool reverse = uniform(generator) < 0.5;                           // direction
      const int64_t a = reverse ? second : first, b = reverse ? first : second;
      if (options.input_size[a] != options.input_size[b] ||
          options.output_size[a] != options.output_size[b]) {
        continue;  // a quarter turn of a non-square patch would change its shape
      }
      spec.rotations.push_back({a, b, turns});
    }
  }
  if (uniform(generator) < options.histogram_probability) {
    // Per channel, intensities * N(1, 0.01) + U(0, 0.05), the reference's
    // RandomHistogramDeformation defaults.
    const int64_t channels = volume.image.size(0);
    spec.scale = at::randn({channels}, generator, at::TensorOptions(at::kFloat)) * 0.01 + 1.0;
    spec.shift = at::rand({channels}, generator, at::TensorOptions(at::kFloat)) * 0.05;
  }
  return spec;
}

Patch make_patch(const Volume& volume, const PatchSpec& spec, const PatchOptions& options) {
  Patch patch = extract_patch(volume, spec.centre, options.input_size, options.output_size);
  // The same rotations, then flips, for image, target and mask, as the reference's augmention.py:
  // axes count spatial axes from 0, and the image's leading channel axis shifts them by one.
  for (const auto& [a, b, turns] : spec.rotations) {
    patch.image = patch.image.rot90(turns, {1 + a, 1 + b});
    patch.target = patch.target.rot90(turns, {a, b});
    patch.mask = patch.mask.rot90(turns, {a, b});
  }
  if (spec.flip) {
    for (int64_t axis : options.flip_axes) {  // one draw flips every allowed axis
      patch.image = patch.image.flip({1 + axis});
      patch.target = patch.target.flip({axis});
      patch.mask = patch.mask.flip({axis});
    }
  }
  if (spec.scale.defined()) {
    std::vector<int64_t> shape(options.input_size.size() + 1, 1);
    shape[0] = spec.scale.numel();
    patch.image = patch.image * spec.scale.reshape(shape) + spec.shift.reshape(shape);
  }
  patch.image = patch.image.contiguous();
  patch.target = patch.target.contiguous();
  patch.mask = patch.mask.contiguous();
  return patch;
}

Patch sample_patch(const Volume& volume, const PatchOptions& options, at::Generator& generator) {
  return make_patch(volume, draw_patch(volume, options, generator), options);
}

}  // namespace ssn::data
