// fer/emotions.hpp — what makes the data FER-2013: seven emotion classes in Kaggle's label order
// (0 angry ... 6 neutral), 48 x 48 gray faces, and the ReadOptions that tell facet's generic
// readers so. Read next: fer_csv.hpp (the Kaggle CSV as a configuration of facet's CSV reader).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <facet/data/dataset.hpp>

namespace fer {

/// FER-2013 images are 48 x 48 gray pixels.
inline constexpr std::size_t fer_image_side = 48;
inline constexpr std::size_t fer_image_pixels = fer_image_side * fer_image_side;
inline constexpr int fer_num_classes = 7;

/// The canonical class order: Kaggle's label numbers 0..6. Folder names map onto these.
inline constexpr std::array<std::string_view, fer_num_classes> fer_class_names = {
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};

/// The canonical class names as strings (for data sets, tables and reports).
inline std::vector<std::string> fer_class_name_list() {
    return {fer_class_names.begin(), fer_class_names.end()};
}

/// The names of a comma-separated list ("face,background"), blanks around them dropped; throws
/// facet::Error for an empty name or a name given twice.
inline std::vector<std::string> split_class_list(const std::string& text) {
    std::vector<std::string> names;
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        std::string name = text.substr(start, comma - start);
        const std::size_t first = name.find_first_not_of(" \t"),
                          last = name.find_last_not_of(" \t");
        name = first == std::string::npos ? "" : name.substr(first, last - first + 1);
        facet::check(!name.empty(), "empty class name in '", text, "'");
        facet::check(facet::find_class(names, name) < 0, "class '", name, "' named twice in '",
                     text, "'");
        names.push_back(name);
        if (comma == text.size()) return names;
        start = comma + 1;
    }
}

/// The label number of a class name in any letter case ("Happy", "HAPPY"), or -1 if unknown.
inline int fer_class_index(std::string_view name) {
    return facet::find_class(fer_class_name_list(), name);
}

/// `base` with FER-2013's classes (in Kaggle order, folder names matched in any case) unless it
/// names classes of its own, and FER-2013's 48 x 48 size; images of any other size are cropped to
/// their central square and resampled, so any face picture can be evaluated.
inline facet::ReadOptions fer_read_options(facet::ReadOptions base = {}) {
    if (base.class_names.empty()) base.class_names = fer_class_name_list();
    base.image_height = base.image_width = fer_image_side;
    base.resize = true;
    return base;
}

}  // namespace fer
