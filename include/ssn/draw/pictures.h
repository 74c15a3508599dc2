#pragma once

// Pictures of images, label maps and uncertainty maps as RGB tensors [H, W, 3] uint8, and their
// composition into labelled grids: the pieces of `ssn sample --sweep` figures and `ssn report`.
// Rendering only; encoding to PNG is io/'s job.

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ssn::draw {

/// image [H, W] of any numeric type -> grey RGB [H, W, 3], stretched from its min to its max
/// (a constant image is black).
at::Tensor grey_picture(const at::Tensor& image);

/// A black RGB [H, W, 3] picture.
at::Tensor black_picture(int64_t height, int64_t width);

/// The colour of class c >= 1 (background has none): red, green, blue, yellow, magenta, cyan,
/// then repeating.
std::array<uint8_t, 3> class_colour(int64_t c);

/// labels [H, W] (class indices; with num_classes = 2 any non-zero value is foreground) blended
/// over background RGB [H, W, 3]: every foreground pixel takes 60 % of its class colour.
at::Tensor label_overlay(const at::Tensor& background, const at::Tensor& labels,
                         int64_t num_classes);

/// values [H, W] -> RGB through the viridis colour map, 0 -> dark violet, max_value -> yellow.
at::Tensor heat_picture(const at::Tensor& values, double max_value);

/// RGB [H, W, 3] -> [H * factor, W * factor, 3] by repeating pixels (label maps stay crisp).
at::Tensor upscale(const at::Tensor& picture, int64_t factor);

/// Tiles in rows (each tile RGB, all the same size) on white with `gap` pixels between them, and
/// a text label left of each row when row_labels is not empty (one per row). The label font knows
/// digits, '-', '+', '.', '=', ' ', 'T', 'c' and 'w'; other characters throw.
at::Tensor tile_grid(const std::vector<std::vector<at::Tensor>>& rows,
                     const std::vector<std::string>& row_labels, int64_t gap = 4);

/// For labels [D, H, W]: the index along D of the slice with the most foreground (the middle
/// slice when there is none), the slice a picture of a volume shows.
int64_t representative_slice(const at::Tensor& labels);

}  // namespace ssn::draw
