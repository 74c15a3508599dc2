#include "ssn/draw/pictures.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "golden.h"

namespace ssn::draw {
namespace {

using ssn::testing::error_of;
using ::testing::HasSubstr;

TEST(Render, GreyPictureStretchesMinToMax) {
  const at::Tensor picture = grey_picture(at::tensor({-1.0f, 0.0f, 1.0f}).reshape({1, 3}));
  EXPECT_EQ(picture.sizes(), (std::vector<int64_t>{1, 3, 3}));
  EXPECT_EQ(picture[0][0][0].item<int>(), 0);
  EXPECT_EQ(picture[0][1][1].item<int>(), 128);
  EXPECT_EQ(picture[0][2][2].item<int>(), 255);
  EXPECT_EQ(grey_picture(at::ones({2, 2})).max().item<int>(), 0);
}

TEST(Render, OverlayTintsForegroundOnly) {
  const at::Tensor background = at::full({1, 3, 3}, 100, at::kByte);
  const at::Tensor labels = at::tensor({0, 1, 2}, at::kLong).reshape({1, 3});
  const at::Tensor picture = label_overlay(background, labels, 3);
  EXPECT_TRUE(picture[0][0].equal(background[0][0]));
  const auto red = class_colour(1), green = class_colour(2);
  EXPECT_EQ(picture[0][1][0].item<int>(), static_cast<int>(std::lround(40 + 0.6 * red[0])));
  EXPECT_EQ(picture[0][2][1].item<int>(), static_cast<int>(std::lround(40 + 0.6 * green[1])));
  // Two classes: any non-zero value (a 0/255 mask) is class 1.
  const at::Tensor mask = at::tensor({0, 255}, at::kLong).reshape({1, 2});
  EXPECT_EQ(label_overlay(at::zeros({1, 2, 3}, at::kByte), mask, 2)[0][1][0].item<int>(),
            static_cast<int>(std::lround(0.6 * red[0])));
  EXPECT_THAT(error_of([&] {
                label_overlay(background, at::zeros({2, 2}), 2);
              }),
              HasSubstr("expected labels [H, W] of the picture's size"));
}

TEST(Render, HeatPictureRunsFromVioletToYellow) {
  const at::Tensor picture = heat_picture(at::tensor({0.0f, 2.0f, 5.0f}).reshape({1, 3}), 2.0);
  EXPECT_TRUE(picture[0][0].equal(at::tensor({68, 1, 84}, at::kByte)));
  EXPECT_TRUE(picture[0][1].equal(at::tensor({253, 231, 37}, at::kByte)));
  EXPECT_TRUE(picture[0][2].equal(picture[0][1]));  // clamped
}

TEST(Render, TileGridPlacesTilesAndLabels) {
  const at::Tensor tile = at::zeros({4, 6, 3}, at::kByte);
  const at::Tensor grid = tile_grid({{tile, tile}, {tile}}, {}, /*gap=*/2);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{2 + 2 * 6, 2 + 2 * 8, 3}));
  EXPECT_EQ(grid[2][2][0].item<int>(), 0);     // first tile
  EXPECT_EQ(grid[8][10][0].item<int>(), 255);  // the missing second tile of row 2 is white
  const at::Tensor labelled = tile_grid({{upscale(tile, 4)}}, {"T=0.5"}, 2);
  EXPECT_GT(labelled.size(1), grid.size(1));
  EXPECT_LT(labelled.slice(1, 0, 60).min().item<int>(), 255);  // the label is drawn
  EXPECT_THAT(error_of([&] { tile_grid({{tile}}, {"x"}); }),
              HasSubstr("the figure font has no character 'x'"));
  EXPECT_THAT(error_of([&] {
                tile_grid({{tile, upscale(tile, 2)}}, {});
              }),
              HasSubstr("figure tiles differ in size"));
}

TEST(Render, RepresentativeSliceHasTheMostForeground) {
  at::Tensor labels = at::zeros({5, 4, 4}, at::kLong);
  EXPECT_EQ(representative_slice(labels), 2);
  labels[1].fill_(1);
  labels[3][0][0] = 2;
  EXPECT_EQ(representative_slice(labels), 1);
}

}  // namespace
}  // namespace ssn::draw
