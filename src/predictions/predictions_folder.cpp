#include "ssn/predictions/predictions_folder.h"

#include <c10/util/Exception.h>

#include <map>
#include <sstream>

#include "ssn/io/atomic_file.h"
#include "ssn/io/csv.h"

namespace ssn::predictions {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHeader = "id,image,prediction,logit_mean,cov_diag,cov_factor,annotations";

std::string file_stem(const std::string& id) {
  std::string stem = id;
  for (char& c : stem) {
    if (c == '/') c = '_';
  }
  return stem;
}

// A path of a prediction.csv: relative ones resolve against its folder. The reference's
// inference.py writes paths relative to the folder it ran in (<job_dir>/predictions/<file>), so
// a relative path that is not there is looked for by its file name in the CSV's folder, then
// from the working folder.
fs::path resolve(const fs::path& dir, const std::string& field) {
  const fs::path path(field);
  if (path.is_absolute()) return path;
  const fs::path in_dir = dir / path;
  if (fs::exists(in_dir)) return in_dir;
  if (fs::exists(dir / path.filename())) return dir / path.filename();
  if (fs::exists(path)) return fs::absolute(path);
  return in_dir;
}

}  // namespace

std::vector<PredictionCase> read_prediction_csv(const fs::path& dir, bool require_annotations) {
  const fs::path csv = dir / "prediction.csv";
  TORCH_CHECK(fs::is_regular_file(csv), "predictions folder ", dir.string(),
              " has no prediction.csv (", csv.string(), ": no such file)");
  const io::CsvTable table = io::read_csv(csv);
  // The reference's inference.py writes the case's target as 'seg' (one annotation) and its ROI
  // as 'sampling_mask', next to the test CSV's other columns.
  const bool reference = !table.column.count("annotations") && table.column.count("seg");
  const char* annotations = reference ? "seg" : "annotations";
  for (const char* required : {"id", "logit_mean", "cov_diag", "cov_factor"}) {
    TORCH_CHECK(table.column.count(required), csv.string(), ": the header has no column '",
                required,
                "' (expected ssn's id,logit_mean,cov_diag,cov_factor,annotations or the "
                "reference's id,...,seg,sampling_mask,...,logit_mean,cov_diag,cov_factor)");
  }
  TORCH_CHECK(!require_annotations || table.column.count(annotations), csv.string(),
              ": the header has no column 'annotations' (ssn's folders) or 'seg' (the "
              "reference's)");
  std::vector<PredictionCase> cases;
  std::map<std::string, int> seen;
  for (size_t row = 0; row < table.rows.size(); ++row) {
    const int line_number = table.line_numbers[row];
    PredictionCase c;
    c.id = table.field(row, "id");
    TORCH_CHECK(!c.id.empty(), csv.string(), " line ", line_number, ": empty id");
    TORCH_CHECK(seen.emplace(c.id, line_number).second, csv.string(), " line ", line_number,
                ": id '", c.id, "' repeats line ", seen[c.id]);
    c.logit_mean = resolve(dir, table.field(row, "logit_mean"));
    c.cov_diag = resolve(dir, table.field(row, "cov_diag"));
    c.cov_factor = resolve(dir, table.field(row, "cov_factor"));
    if (table.column.count(annotations)) {
      for (const std::string& path : io::split_fields(table.field(row, annotations), ';')) {
        if (!path.empty()) c.annotations.push_back(resolve(dir, path));
      }
    }
    TORCH_CHECK(!require_annotations || !c.annotations.empty(), csv.string(), " line ", line_number,
                ": case ", c.id, " has no annotations (column '", annotations, "'",
                reference ? ")" : ", paths separated by ';')");
    if (table.column.count("image") && !table.field(row, "image").empty()) {
      c.image = resolve(dir, table.field(row, "image"));
    }
    if (reference && table.column.count("sampling_mask") &&
        !table.field(row, "sampling_mask").empty()) {
      c.sampling_mask = resolve(dir, table.field(row, "sampling_mask"));
    }
    cases.push_back(std::move(c));
  }
  TORCH_CHECK(!cases.empty(), csv.string(), " lists no cases");
  return cases;
}

PredictionMaps read_prediction_maps(const PredictionCase& c) {
  PredictionMaps maps{io::read_channels(c.logit_mean), io::read_channels(c.cov_diag),
                      io::read_channels(c.cov_factor)};
  TORCH_CHECK(maps.mean.is_floating_point() && maps.mean.dim() >= 3, c.logit_mean.string(),
              ": expected floating-point maps [C, *spatial] with 2 or 3 spatial axes, got ",
              maps.mean.scalar_type(), " ", maps.mean.sizes());
  TORCH_CHECK(maps.cov_diag.sizes() == maps.mean.sizes(), c.cov_diag.string(), " has shape ",
              maps.cov_diag.sizes(), ", but ", c.logit_mean.filename().string(), " has ",
              maps.mean.sizes());
  TORCH_CHECK(maps.cov_factor.dim() == maps.mean.dim() &&
                  maps.cov_factor.size(0) % maps.mean.size(0) == 0 &&
                  maps.cov_factor.sizes().slice(1) == maps.mean.sizes().slice(1),
              c.cov_factor.string(), " has shape ", maps.cov_factor.sizes(), ", expected [C*R, ",
              maps.mean.sizes().slice(1), "] with C = ", maps.mean.size(0));
  // NaN would drop the case out of every mean silently; D <= 0 is no covariance.
  for (const auto& [map, file] : {std::pair{maps.mean, c.logit_mean},
                                  {maps.cov_diag, c.cov_diag},
                                  {maps.cov_factor, c.cov_factor}}) {
    TORCH_CHECK(at::isfinite(map).all().item<bool>(), file.string(), " (case ", c.id,
                ") holds NaN or infinite values");
  }
  TORCH_CHECK(maps.cov_diag.numel() == 0 || maps.cov_diag.min().item<double>() > 0,
              c.cov_diag.string(), " (case ", c.id, ") holds a variance <= 0 (minimum ",
              maps.cov_diag.min().item<double>(), "): the diagonal D must be > 0");
  if (!c.sampling_mask.empty()) {
    // As the reference's evaluation samples: background outside the ROI, no covariance there.
    const at::Tensor mask = io::read_label_image(c.sampling_mask).ne(0);
    TORCH_CHECK(mask.sizes() == maps.mean.sizes().slice(1), c.sampling_mask.string(), " (case ",
                c.id, ") has shape ", mask.sizes(), ", the maps ", maps.mean.sizes().slice(1));
    const at::Tensor outside = mask.logical_not();
    maps.mean[0].masked_fill_(outside, kReferenceBackgroundLogit);
    maps.cov_factor.mul_(mask.to(maps.cov_factor.scalar_type()));
  }
  return maps;
}

at::Tensor read_label_maps(const std::vector<fs::path>& files, int64_t num_classes,
                           at::IntArrayRef spatial, const fs::path& shape_source) {
  std::vector<at::Tensor> maps;
  for (const auto& file : files) {
    at::Tensor labels = io::read_label_image(file);
    if (!spatial.empty()) {
      TORCH_CHECK(labels.sizes() == spatial, file.string(), " has shape ", labels.sizes(), ", but ",
                  shape_source.filename().string(), " has ", spatial);
    }
    if (num_classes == 2) {
      labels = labels.ne(0).to(at::kLong);  // 0/255 masks and the like
    } else if (labels.numel() > 0) {
      const int64_t high = labels.max().item<int64_t>();
      const int64_t low = labels.min().item<int64_t>();
      TORCH_CHECK(low >= 0 && high < num_classes, file.string(), " holds labels in [", low, ", ",
                  high, "], expected class indices in [0, ", num_classes, ") (--num-classes ",
                  num_classes, ")");
    }
    maps.push_back(labels.to(at::kByte));  // checked < K <= 256: the packing needs no second pass
  }
  return at::stack(maps);
}

void check_same_geometry(const std::vector<fs::path>& files, const fs::path& reference, size_t axes,
                         const std::string& case_id) {
  const io::Geometry expected = io::read_geometry(reference).leading(axes);
  for (const auto& file : files) {
    const io::Geometry geometry = io::read_geometry(file).leading(axes);
    TORCH_CHECK(geometry.matches(expected), file.string(), " (case ", case_id,
                ") has another geometry than ", reference.filename().string(), ": ",
                geometry.describe(), " against ", expected.describe());
  }
}

at::Tensor read_annotations(const PredictionCase& c, int64_t num_classes, at::IntArrayRef spatial) {
  at::Tensor labels = read_label_maps(c.annotations, num_classes, spatial, c.logit_mean);
  if (spatial.size() == 3) check_same_geometry(c.annotations, c.logit_mean, 3, c.id);
  return labels;
}

PredictionsWriter::PredictionsWriter(fs::path folder) : folder_(std::move(folder)) {}

void PredictionsWriter::write_case(const CasePrediction& p) {
  TORCH_CHECK(p.mean.defined() && p.mean.dim() >= 3 && p.mean.dim() <= 4,
              "PredictionsWriter: case ", p.id, ": expected mean [C, *spatial], got ",
              p.mean.defined() ? p.mean.sizes() : at::IntArrayRef{});
  const std::string stem = file_stem(p.id);
  for (size_t i = 0; i < stems_.size(); ++i) {
    TORCH_CHECK(stems_[i] != stem, "PredictionsWriter: case ids '", p.id,
                "' and an earlier one both give the file stem '", stem, "'");
  }
  stems_.push_back(stem);
  const bool planar = p.mean.dim() == 3;  // pictures as PNG; volumes as NIfTI with geometry
  const int64_t classes = p.mean.size(0);
  // Two-class PNGs are 0/255 masks, as the LIDC crops layout; everything else class indices.
  const int64_t label_scale = planar && classes == 2 ? 255 : 1;
  const std::string label_ext = planar ? ".png" : ".nii.gz";
  const at::Tensor cov_diag =
      p.cov_diag.defined() ? p.cov_diag : at::full_like(p.mean, kDeterministicVariance);
  // R = 0 is written as one zero factor channel per class (R = 1, P = 0).
  const at::Tensor cov_factor =
      p.cov_factor.defined() && p.cov_factor.size(0) > 0 ? p.cov_factor : at::zeros_like(p.mean);
  io::write_float_image(folder_ / (stem + "_logit_mean.nii.gz"), p.mean, p.geometry);
  io::write_float_image(folder_ / (stem + "_cov_diag.nii.gz"), cov_diag, p.geometry);
  io::write_float_image(folder_ / (stem + "_cov_factor.nii.gz"), cov_factor, p.geometry);
  io::write_label_image(folder_ / (stem + "_prediction" + label_ext),
                        p.mean.argmax(0) * label_scale, p.geometry);
  const std::string image = stem + (planar ? "_image.png" : "_image.nii.gz");
  if (planar) {
    const at::Tensor grey = p.image;
    io::write_label_image(
        folder_ / image,
        ((grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6) * 255).round());
  } else {
    io::write_float_image(folder_ / image, p.image, p.geometry);
  }
  std::string annotations;
  if (p.annotations.defined()) {
    for (int64_t a = 0; a < p.annotations.size(0); ++a) {
      const std::string name = stem + "_l" + std::to_string(a + 1) + label_ext;
      io::write_label_image(folder_ / name, p.annotations[a] * label_scale, p.geometry);
      annotations += (a ? ";" : "") + name;
    }
  }
  std::ostringstream row;
  row << stem << "," << image << "," << stem << "_prediction" << label_ext << "," << stem
      << "_logit_mean.nii.gz," << stem << "_cov_diag.nii.gz," << stem << "_cov_factor.nii.gz,"
      << annotations;
  rows_.push_back(row.str());
}

void PredictionsWriter::finish() {
  std::ostringstream csv;
  csv << kHeader << "\n";
  for (const auto& row : rows_) csv << row << "\n";
  io::write_text_file(folder_ / "prediction.csv", csv.str());
}

void PredictionsWriter::merge_shards(const std::vector<fs::path>& shards) {
  std::vector<std::vector<std::string>> rows = {rows_};
  for (const fs::path& shard : shards) {
    const fs::path csv = shard / "prediction.csv";
    std::istringstream lines(io::read_text_file(csv));
    std::string line;
    TORCH_CHECK(std::getline(lines, line) && line == kHeader, csv.string(),
                ": expected the header ", kHeader);
    rows.emplace_back();
    while (std::getline(lines, line)) {
      if (!line.empty()) rows.back().push_back(line);
    }
    for (const auto& entry : fs::directory_iterator(shard)) {
      if (entry.path().filename() == "prediction.csv") continue;
      const fs::path target = folder_ / entry.path().filename();
      TORCH_CHECK(!fs::exists(target), "merging ", shard.string(), ": ", target.string(),
                  " exists already (two shards wrote the same case?)");
      fs::rename(entry.path(), target);
    }
  }
  const size_t world = rows.size();
  size_t total = 0;
  for (const auto& r : rows) total += r.size();
  std::vector<std::string> merged;
  for (size_t i = 0; i < total; ++i) {
    const auto& from = rows[i % world];
    TORCH_CHECK(i / world < from.size(), "merging the shards: shard ", i % world, " has ",
                from.size(), " cases, expected case ", i / world);
    merged.push_back(from[i / world]);
  }
  rows_ = std::move(merged);
}

int64_t write_predictions_folder(const fs::path& out, const std::string& what,
                                 const std::function<void(PredictionsWriter&)>& write) {
  int64_t cases = 0;
  io::write_folder_atomically(out, what, [&](const fs::path& staging) {
    PredictionsWriter writer(staging);
    write(writer);
    writer.finish();
    cases = static_cast<int64_t>(writer.rows_count());
  });
  return cases;
}

}  // namespace ssn::predictions
