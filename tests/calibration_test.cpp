#include "ssn/evaluation/calibration.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "golden.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/png.h"
#include "ssn/predictions/predictions_folder.h"

namespace ssn::evaluation {
namespace {

namespace fs = std::filesystem;
using ssn::testing::error_of;
using ::testing::HasSubstr;

class Calibrate : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!io::image_io_available()) GTEST_SKIP() << "built without ITK";
    root_ = fs::temp_directory_path() / ("ssn_calibration_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A folder of `cases` 2-class cases whose four annotations are draws of the predicted
  // distribution at temperature `truth`: a blob of margin 2 whose rank-1 direction grows or
  // shrinks it as a whole, plus a little independent noise.
  // With `annotated_radius`, the annotations are drawn from the same distribution with its blob
  // at that radius instead of 4: a model whose mean is off. `factor`: the rank-1 direction's size.
  fs::path folder_drawn_at(double truth, int64_t cases, double annotated_radius = 4,
                           float factor = 3.0f) const {
    const fs::path out = root_ / "predictions";
    at::Generator generator = at::detail::createCPUGenerator(3);
    const at::Tensor grid = at::arange(16, at::kFloat) - 7.5f;
    const at::Tensor radius = (grid.view({16, 1}).pow(2) + grid.view({1, 16}).pow(2)).sqrt();
    predictions::write_predictions_folder(out, "out", [&](predictions::PredictionsWriter& w) {
      for (int64_t i = 0; i < cases; ++i) {
        predictions::CasePrediction p;
        p.id = "c" + std::to_string(i);
        const at::Tensor logit = (4.0f - radius) * 0.8f;  // class 1 inside radius 4
        p.mean = at::stack({at::zeros_like(logit), logit});
        p.cov_diag = at::full({2, 16, 16}, 0.05f);
        p.cov_factor = at::stack({at::zeros_like(logit), at::full_like(logit, factor)});
        const at::Tensor annotated = (annotated_radius - radius) * 0.8f;
        const LowRankNormal distribution =
            distribution_from_maps(at::stack({at::zeros_like(annotated), annotated}).unsqueeze(0),
                                   p.cov_diag.unsqueeze(0), p.cov_factor.unsqueeze(0));
        SamplingControls controls;
        controls.temperature = truth;
        p.annotations =
            distribution.rsample(4, generator, controls).reshape({4, 2, 16, 16}).argmax(/*dim=*/1);
        p.image = radius;
        w.write_case(p);
      }
    });
    return out;
  }

  fs::path root_;
};

TEST_F(Calibrate, FindsTheTemperatureTheAnnotationsWereDrawnAt) {
  for (const double truth : {0.4, 1.4}) {
    const fs::path folder = folder_drawn_at(truth, 40);
    CalibrationOptions options;
    options.num_samples = 32;
    // The GED alone: four draws of a continuous process disagree less on average over all pairs,
    // self-pairs included, than 32 draws do (3/4 against 31/32 of the distinct pairs' mean), so
    // the true temperature's diversity ratio is about 1.29, at the edge of the default band.
    options.max_diversity_ratio = 0;
    options.avoid_whole_image = false;  // at 1.4 the process itself paints whole images
    const Calibration c = fit_calibration(folder, options);
    EXPECT_NEAR(c.temperature, truth, 0.25) << "drawn at " << truth;
    EXPECT_LE(c.after.ged, c.before.ged);
    EXPECT_LE(c.after.ged, c.temperature_only.ged);
    EXPECT_EQ(c.num_cases, 40);
    EXPECT_EQ(c.num_samples, 32);
    fs::remove_all(folder);
  }
}

TEST_F(Calibrate, KeepsTheDiversityWithinTheBandWhereTheGedAloneWouldWidenIt) {
  // The model's blob is larger than the annotated one: the GED alone prefers a wide spread.
  const fs::path folder = folder_drawn_at(0.4, 30, /*annotated_radius=*/2.5);
  CalibrationOptions options;
  options.num_samples = 32;
  options.max_diversity_ratio = 0;
  options.avoid_whole_image = false;
  const Calibration free = fit_calibration(folder, options);
  ASSERT_GT(free.after.diversity, 1.25 * free.annotator_diversity)
      << "the case must be one where the band binds";
  options.max_diversity_ratio = 1.25;
  const Calibration banded = fit_calibration(folder, options);
  EXPECT_LE(banded.after.diversity, 1.25 * banded.annotator_diversity);
  EXPECT_GE(banded.after.diversity, banded.annotator_diversity / 1.25);
  EXPECT_LT(banded.temperature, free.temperature);
  EXPECT_GE(banded.after.ged, free.after.ged);
  EXPECT_EQ(banded.max_diversity_ratio, 1.25);
  write_calibration(root_ / "banded.json", banded);
  EXPECT_EQ(read_calibration(root_ / "banded.json").max_diversity_ratio, 1.25);
  // Relative to an annotators' diversity measured on more images (here: said to be 1.2 times
  // the cases' own), the band lets the spread go further, and the file says on what.
  EXPECT_FALSE(banded.band_annotator_diversity.has_value());
  options.band_reference = std::pair{1.2 * banded.annotator_diversity, int64_t{900}};
  const Calibration wider = fit_calibration(folder, options);
  EXPECT_EQ(wider.annotator_diversity, banded.annotator_diversity);
  EXPECT_DOUBLE_EQ(wider.band_reference(), 1.2 * banded.annotator_diversity);
  EXPECT_LE(wider.after.diversity, 1.25 * wider.band_reference());
  EXPECT_GT(wider.after.diversity, 1.25 * wider.annotator_diversity);
  EXPECT_GT(wider.temperature, banded.temperature);
  EXPECT_THAT(describe(wider), HasSubstr("; over all 900 training and validation images"));
  write_calibration(root_ / "wider.json", wider);
  const Calibration back = read_calibration(root_ / "wider.json");
  ASSERT_TRUE(back.band_annotator_diversity.has_value());
  EXPECT_EQ(*back.band_annotator_diversity, *wider.band_annotator_diversity);
  EXPECT_EQ(back.band_annotator_cases, 900);
  EXPECT_FALSE(read_calibration(root_ / "banded.json").band_annotator_diversity.has_value());
  std::string text = io::read_text_file(root_ / "wider.json");
  const size_t at = text.find("\"num_cases\": 900");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 16, "\"num_cases\": 0");
  io::write_text_file(root_ / "wider.json", text);
  EXPECT_THAT(error_of([&] { read_calibration(root_ / "wider.json"); }),
              HasSubstr("field band_reference: expected a diversity >= 0 over >= 1 image"));
  options.band_reference = std::pair{0.3, int64_t{0}};
  EXPECT_THAT(error_of([&] { fit_calibration(folder, options); }), HasSubstr("over >= 1 image"));
  options.band_reference.reset();
  options.max_diversity_ratio = 0.5;
  EXPECT_THAT(error_of([&] { fit_calibration(folder, options); }), HasSubstr(">= 1"));
}

// Where the model's blob is larger than the annotated one, the GED alone widens the spread until
// some samples paint most of the image; the calibration prefers the temperatures that draw none.
TEST_F(Calibrate, PrefersTheSettingsWithoutWholeImageSamples) {
  const fs::path folder = folder_drawn_at(0.4, 30, /*annotated_radius=*/2.5, /*factor=*/1.0f);
  CalibrationOptions options;
  options.num_samples = 32;
  options.max_diversity_ratio = 0;
  options.avoid_whole_image = false;
  const Calibration free = fit_calibration(folder, options);
  ASSERT_GT(free.after.whole_image, 0) << "the case must be one where the preference binds";
  options.avoid_whole_image = true;
  const Calibration guarded = fit_calibration(folder, options);
  EXPECT_EQ(guarded.after.whole_image, 0);
  EXPECT_LT(guarded.temperature, free.temperature);
  EXPECT_GE(guarded.after.ged, free.after.ged);
  EXPECT_THAT(describe(guarded), HasSubstr("whole-image samples"));
  // What the preference set aside is recorded: the grid's lowest GED, which has such samples.
  ASSERT_TRUE(guarded.lowest_ged_temperature.has_value());
  EXPECT_LE(guarded.lowest_ged.ged, guarded.after.ged);
  EXPECT_GT(guarded.lowest_ged.whole_image, 0);
  EXPECT_GT(*guarded.lowest_ged_temperature, guarded.temperature);
  EXPECT_EQ(describe(guarded).find("was set aside") != std::string::npos,
            guarded.lowest_ged.ged < guarded.after.ged - 0.01)
      << describe(guarded);
  write_calibration(root_ / "guarded.json", guarded);
  const Calibration back = read_calibration(root_ / "guarded.json");
  ASSERT_TRUE(back.lowest_ged_temperature.has_value());
  EXPECT_EQ(*back.lowest_ged_temperature, *guarded.lowest_ged_temperature);
  EXPECT_EQ(back.lowest_ged.ged, guarded.lowest_ged.ged);
  EXPECT_EQ(back.lowest_ged.whole_image, guarded.lowest_ged.whole_image);
  EXPECT_TRUE(back.avoid_whole_image);
  EXPECT_EQ(back.after.whole_image, 0);
  EXPECT_EQ(back.before.whole_image, guarded.before.whole_image);
  // Where the annotators themselves paint more than half an image somewhere, it does not apply.
  fs::remove_all(folder);
  const Calibration painted = fit_calibration(folder_drawn_at(1.4, 20), options);
  EXPECT_FALSE(painted.avoid_whole_image);
}

TEST_F(Calibrate, TheSameSeedGivesTheSameFitAndTheFileReadsBack) {
  const fs::path folder = folder_drawn_at(0.7, 12);
  CalibrationOptions options;
  options.num_samples = 16;
  options.max_cases = 10;
  const Calibration a = fit_calibration(folder, options);
  const Calibration b = fit_calibration(folder, options);
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.after.ged, b.after.ged);
  EXPECT_EQ(a.num_cases, 10);
  Calibration written = a;
  written.class_weights = at::tensor({1.0f, 1.2f});
  written.checkpoint_name = "checkpoint_best.pt";
  written.checkpoint_size = 1234;
  written.checkpoint_crc = 0xdeadbeef;
  write_calibration(root_ / "calibration.json", written);
  const Calibration read = read_calibration(root_ / "calibration.json");
  EXPECT_EQ(read.temperature, written.temperature);
  ASSERT_TRUE(read.class_weights.defined());
  EXPECT_TRUE(at::allclose(read.class_weights, written.class_weights));
  EXPECT_EQ(read.after.ged, written.after.ged);
  EXPECT_EQ(read.checkpoint_crc, 0xdeadbeefu);
  EXPECT_EQ(read.controls().temperature, written.temperature);
}

TEST_F(Calibrate, ABadFileIsRefusedNamingTheFieldAndACaseWithoutAnnotationsNamingTheCase) {
  const fs::path file = root_ / "calibration.json";
  io::write_text_file(file, R"({"format": "ssn-calibration", "version": 1, "temperature": -1})");
  EXPECT_THAT(error_of([&] { read_calibration(file); }),
              HasSubstr("field temperature: expected a finite number >= 0, got -1"));
  io::write_text_file(file, R"({"format": "ssn-calibration", "version": 1, "temperature": 1,
      "class_weights": [1, "x"]})");
  EXPECT_THAT(error_of([&] { read_calibration(file); }), HasSubstr("field class_weights"));
  io::write_text_file(file, R"({"format": "ssn-calibration", "version": 1, "temperature": 1})");
  EXPECT_THAT(error_of([&] { read_calibration(file); }), HasSubstr("field validation"));
  io::write_text_file(file, "{}");
  EXPECT_THAT(error_of([&] { read_calibration(file); }), HasSubstr("\"format\""));

  const fs::path out = root_ / "unannotated";
  predictions::write_predictions_folder(out, "out", [&](predictions::PredictionsWriter& w) {
    predictions::CasePrediction p;
    p.id = "lonely";
    p.mean = at::randn({2, 6, 5});
    p.cov_diag = at::rand({2, 6, 5}) + 0.1;
    p.cov_factor = at::randn({2, 6, 5});
    p.image = at::randn({6, 5});
    w.write_case(p);
  });
  EXPECT_THAT(error_of([&] { fit_calibration(out, {}); }), HasSubstr("annotation"));
}

}  // namespace
}  // namespace ssn::evaluation
