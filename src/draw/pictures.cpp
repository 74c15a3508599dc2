#include "ssn/draw/pictures.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace ssn::draw {
namespace {

// A 5 x 7 bitmap font for the row labels of figures: each glyph is 7 rows of 5 bits, the most
// significant of the 5 being the leftmost pixel.
const std::map<char, std::array<uint8_t, 7>>& glyphs() {
  static const std::map<char, std::array<uint8_t, 7>> font = {
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
      {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
      {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
      {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
      {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
      {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
      {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
      {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
      {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
      {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
      {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}},
      {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}},
  };
  return font;
}

constexpr int64_t kGlyphWidth = 5, kGlyphHeight = 7, kTextScale = 2;

void check_picture(const at::Tensor& picture) {
  TORCH_CHECK(picture.dim() == 3 && picture.size(2) == 3 && picture.scalar_type() == at::kByte,
              "expected an RGB picture [H, W, 3] of uint8, got ", picture.sizes(), " ",
              picture.scalar_type());
}

// Black text on a white canvas [7 * scale, width, 3] starting at column `left`.
void draw_text(at::Tensor& canvas, const std::string& text, int64_t top, int64_t left) {
  auto pixels = canvas.accessor<uint8_t, 3>();
  for (size_t i = 0; i < text.size(); ++i) {
    const auto glyph = glyphs().find(text[i]);
    TORCH_CHECK(glyph != glyphs().end(), "the figure font has no character '", text[i],
                "' (label \"", text, "\")");
    const int64_t x0 = left + static_cast<int64_t>(i) * (kGlyphWidth + 1) * kTextScale;
    for (int64_t row = 0; row < kGlyphHeight; ++row) {
      for (int64_t column = 0; column < kGlyphWidth; ++column) {
        if (!((glyph->second[row] >> (kGlyphWidth - 1 - column)) & 1)) continue;
        for (int64_t dy = 0; dy < kTextScale; ++dy) {
          for (int64_t dx = 0; dx < kTextScale; ++dx) {
            const int64_t y = top + row * kTextScale + dy, x = x0 + column * kTextScale + dx;
            if (y < 0 || y >= pixels.size(0) || x < 0 || x >= pixels.size(1)) continue;
            for (int k = 0; k < 3; ++k) pixels[y][x][k] = 0;
          }
        }
      }
    }
  }
}

}  // namespace

at::Tensor grey_picture(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 2, "expected an image [H, W], got ", image.sizes());
  const at::Tensor values = image.to(at::kFloat);
  const float low = values.min().item<float>(), high = values.max().item<float>();
  const at::Tensor grey =
      high > low ? ((values - low) / (high - low) * 255).round() : at::zeros_like(values);
  return grey.to(at::kByte).unsqueeze(-1).expand({-1, -1, 3}).contiguous();
}

at::Tensor black_picture(int64_t height, int64_t width) {
  return at::zeros({height, width, 3}, at::kByte);
}

std::array<uint8_t, 3> class_colour(int64_t c) {
  static const std::array<std::array<uint8_t, 3>, 6> colours = {{{230, 50, 50},
                                                                 {40, 200, 70},
                                                                 {60, 110, 255},
                                                                 {250, 220, 40},
                                                                 {220, 60, 220},
                                                                 {40, 220, 230}}};
  TORCH_CHECK(c >= 1, "class ", c, " has no colour: background is not drawn");
  return colours[(c - 1) % colours.size()];
}

at::Tensor label_overlay(const at::Tensor& background, const at::Tensor& labels,
                         int64_t num_classes) {
  check_picture(background);
  TORCH_CHECK(labels.dim() == 2 && labels.sizes() == background.sizes().slice(0, 2),
              "expected labels [H, W] of the picture's size ", background.sizes().slice(0, 2),
              ", got ", labels.sizes());
  const at::Tensor classes = num_classes == 2 ? labels.ne(0).to(at::kLong) : labels.to(at::kLong);
  at::Tensor picture = background.to(at::kFloat);
  const int64_t highest = classes.numel() ? classes.max().item<int64_t>() : 0;
  for (int64_t c = 1; c <= highest; ++c) {
    const auto colour = class_colour(c);
    const at::Tensor tint =
        at::tensor({float(colour[0]), float(colour[1]), float(colour[2])}, at::kFloat);
    const at::Tensor mask = classes.eq(c).unsqueeze(-1);
    picture = at::where(mask, 0.4 * picture + 0.6 * tint, picture);
  }
  return picture.round().clamp(0, 255).to(at::kByte);
}

at::Tensor heat_picture(const at::Tensor& values, double max_value) {
  TORCH_CHECK(values.dim() == 2, "expected values [H, W], got ", values.sizes());
  // Five stops of matplotlib's viridis, interpolated linearly.
  static const float stops[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  const at::Tensor t = (values.to(at::kFloat) / static_cast<float>(std::max(max_value, 1e-12)))
                           .clamp(0, 1)
                           .mul(4.0f)
                           .contiguous();
  at::Tensor picture = at::empty({values.size(0), values.size(1), 3}, at::kByte);
  const float* in = t.data_ptr<float>();
  uint8_t* out = picture.data_ptr<uint8_t>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int low = std::min(3, static_cast<int>(in[i]));
    const float f = in[i] - static_cast<float>(low);
    for (int k = 0; k < 3; ++k) {
      out[3 * i + k] = static_cast<uint8_t>(
          std::lround(stops[low][k] + f * (stops[low + 1][k] - stops[low][k])));
    }
  }
  return picture;
}

at::Tensor upscale(const at::Tensor& picture, int64_t factor) {
  check_picture(picture);
  TORCH_CHECK(factor >= 1, "expected an upscaling factor >= 1, got ", factor);
  return picture.repeat_interleave(factor, /*dim=*/0).repeat_interleave(factor, /*dim=*/1);
}

at::Tensor tile_grid(const std::vector<std::vector<at::Tensor>>& rows,
                     const std::vector<std::string>& row_labels, int64_t gap) {
  TORCH_CHECK(!rows.empty() && !rows.front().empty(), "a figure needs at least one tile");
  TORCH_CHECK(row_labels.empty() || row_labels.size() == rows.size(), "a figure with ", rows.size(),
              " rows got ", row_labels.size(), " row labels");
  const int64_t tile_h = rows.front().front().size(0), tile_w = rows.front().front().size(1);
  size_t columns = 0, label_chars = 0;
  for (const auto& row : rows) columns = std::max(columns, row.size());
  for (const auto& label : row_labels) label_chars = std::max(label_chars, label.size());
  const int64_t label_w =
      label_chars ? static_cast<int64_t>(label_chars) * (kGlyphWidth + 1) * kTextScale + 2 * gap
                  : 0;
  const int64_t n_rows = static_cast<int64_t>(rows.size()),
                n_columns = static_cast<int64_t>(columns);
  at::Tensor canvas =
      at::full({gap + n_rows * (tile_h + gap), label_w + gap + n_columns * (tile_w + gap), 3}, 255,
               at::kByte);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t top = gap + r * (tile_h + gap);
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const at::Tensor& tile = rows[r][c];
      check_picture(tile);
      TORCH_CHECK(tile.size(0) == tile_h && tile.size(1) == tile_w,
                  "figure tiles differ in size: ", tile.sizes(), " and ",
                  rows.front().front().sizes());
      const int64_t left = label_w + gap + static_cast<int64_t>(c) * (tile_w + gap);
      canvas.slice(0, top, top + tile_h).slice(1, left, left + tile_w).copy_(tile);
    }
    if (!row_labels.empty()) {
      draw_text(canvas, row_labels[r], top + (tile_h - kGlyphHeight * kTextScale) / 2, gap);
    }
  }
  return canvas;
}

int64_t representative_slice(const at::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 3, "expected labels [D, H, W], got ", labels.sizes());
  const at::Tensor per_slice = labels.ne(0).sum({1, 2});
  if (per_slice.max().item<int64_t>() == 0) return labels.size(0) / 2;
  return per_slice.argmax().item<int64_t>();
}

}  // namespace ssn::draw
