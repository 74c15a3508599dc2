#include "ssn/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ssn::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string error_of(const json& config) {
  try {
    parse_config(config, "cfg.json");
  } catch (const c10::Error& error) {
    return error.what_without_backtrace();
  }
  return "<no error>";
}

json minimal() {
  return json::parse(R"({"model": {"StochasticUNet": {"rank": 3}},
                         "loss": {"StochasticSegmentationNetworkLossMCIntegral": {"num_mc_samples": 4}}})");
}

TEST(Config, ShippedSmallConfigsParseAndDifferOnlyInTheModelKind) {
  for (const char* kind : {"lowrank", "diagonal", "deterministic"}) {
    const Config c =
        load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_" + kind + ".json");
    EXPECT_EQ(c.data.size, 64) << kind;
    EXPECT_EQ(c.training.batch_size, 12) << kind;
    EXPECT_EQ(c.model.filters, std::vector<int64_t>({16, 32, 64, 64})) << kind;
  }
  EXPECT_EQ(
      load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_small_diagonal.json").model.kind,
      nn::ModelKind::kDiagonal);
  const Config paper = load_config(std::string(SSN_SOURCE_DIR) + "/configs/lidc_unet_rank10.json");
  EXPECT_EQ(paper.model.rank, 10);
  EXPECT_EQ(paper.loss.num_mc_samples, 20);
  EXPECT_EQ(paper.model.filters, std::vector<int64_t>({32, 64, 128, 192, 192, 192, 192}));
}

TEST(Config, UnknownKeysAndWrongTypesNameTheirPath) {
  json c = minimal();
  c["model"]["StochasticUNet"]["rnk"] = 3;
  EXPECT_THAT(error_of(c), HasSubstr("cfg.json: unknown key model.StochasticUNet.rnk"));
  c = minimal();
  c["training"] = {{"batch_size", "12"}};
  EXPECT_THAT(error_of(c), HasSubstr("training.batch_size must be an integer, got \"12\""));
  c = minimal();
  c["optimiser"] = json::object();
  EXPECT_THAT(error_of(c), HasSubstr("unknown key config.optimiser"));
  c = minimal();
  c["optimizer"] = {{"Adagrad", json::object()}};
  EXPECT_THAT(error_of(c), HasSubstr("unknown optimizer \"Adagrad\""));
  c = minimal();
  c["loss"] = {{"CrossEntropyLoss", json::object()}};
  EXPECT_THAT(error_of(c), HasSubstr("model StochasticUNet needs the loss "
                                     "StochasticSegmentationNetworkLossMCIntegral"));
  c = minimal();
  c["loss"]["StochasticSegmentationNetworkLossMCIntegral"]["num_mc_samples"] = 5;
  EXPECT_THAT(error_of(c), HasSubstr("num_mc_samples must be even"));
  EXPECT_THAT(error_of(json::object()), HasSubstr("model must hold exactly one named entry"));
}

}  // namespace
}  // namespace ssn::config
