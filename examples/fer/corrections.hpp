// fer/corrections.hpp — what users teach the model: a correction is a face with its right
// emotion, stored as DIR/<emotion>/<name>.png (a data set folder). `fer predict --save-faces` and
// `fer video --save-faces` write the crops they classified as DIR/<predicted>/<name>.png;
// `fer correct FACE EMOTION` files one face, with the right emotion, into the corrections folder;
// read_corrections() reads that folder for `fer finetune`, dropping duplicates (same pixels, same
// emotion; reported) and refusing conflicts (same pixels, two emotions; both files named).
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <facet/core/atomic_file.hpp>
#include <facet/core/crc32.hpp>
#include <facet/data/image.hpp>
#include <facet/data/image_folder.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "emotions.hpp"

namespace fer {

/// The valid emotion names, for messages: "angry, disgust, ...".
inline std::string emotion_list(const std::vector<std::string>& classes) {
    std::string s;
    for (const auto& c : classes) s += (s.empty() ? "" : ", ") + c;
    return s;
}

/// A file name part without characters that would make a bad path.
inline std::string safe_file_stem(const std::string& text) {
    std::string s;
    for (char ch : text)
        s += std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ? ch : '_';
    return s.empty() ? "face" : s;
}

/// Writes one classified 48 x 48 crop as `folder/<emotion>/<stem>_<n>.png`, atomically; the
/// folder thus sorts faces by what the model said. Returns the path written.
inline fs::path save_face_crop(const fs::path& folder, const std::string& emotion,
                               const std::string& stem, std::size_t n, const std::uint8_t* pixels) {
    const fs::path dir = folder / emotion;
    fs::create_directories(dir);
    const fs::path path = dir / (safe_file_stem(stem) + "_" + std::to_string(n) + ".png");
    facet::write_png(path, pixels, fer_image_side, fer_image_side);
    return path;
}

/// The corrections of a folder, ready to train on.
struct Corrections {
    facet::Dataset faces;            ///< 48 x 48, FER-2013's classes, one per distinct image
    std::vector<std::string> files;  ///< the file each face of `faces` came from
    /// Files left out because an earlier file (the first of the pair) holds the same pixels with
    /// the same emotion.
    std::vector<std::pair<std::string, std::string>> duplicates;
    /// CRC-32 of the distinct faces' pixels and labels, in file order: names the corrections a
    /// model was fine-tuned on.
    std::string fingerprint() const {
        std::uint32_t crc = facet::crc32_update(0, faces.pixels.data(), faces.pixels.size());
        crc = facet::crc32_update(crc, faces.labels.data(),
                                  faces.labels.size() * sizeof(faces.labels[0]));
        char buf[64];
        std::snprintf(buf, sizeof buf, "crc32 %08x of %zu faces", crc, faces.size());
        return buf;
    }
};

/// Reads `folder/<emotion>/*` (any image format and size; resized to 48 x 48 like fer eval's
/// faces). A folder that is not an emotion, an unreadable image, or one image filed under two
/// emotions is an Error naming the files; an image filed twice under one emotion is kept once and
/// listed in `duplicates`.
inline Corrections read_corrections(const fs::path& folder) {
    facet::check(fs::is_directory(folder), "corrections: ", folder.string(),
                 " is not a folder (expected FOLDER/<emotion>/*.png)");
    const std::vector<std::string> classes = fer_class_name_list();
    Corrections c;
    c.faces.height = c.faces.width = fer_image_side;
    c.faces.class_names = classes;
    c.faces.split = "corrections";
    c.faces.source = folder.string();
    // Same pixels -> the first file holding them (by CRC, then compared byte for byte).
    std::multimap<std::uint32_t, std::size_t> seen;
    for (const fs::path& dir : facet::detail::sorted_entries(folder, true)) {
        const int label = fer_class_index(dir.filename().string());
        facet::check(label >= 0, "corrections: ", dir.string(), ": '", dir.filename().string(),
                     "' is not an emotion (", emotion_list(classes), ")");
        for (const fs::path& file : facet::detail::sorted_entries(dir, false)) {
            if (!facet::detail::has_image_extension(file)) continue;
            const std::vector<std::uint8_t> pixels =
                facet::to_square_gray(facet::load_image(file), fer_image_side);
            const std::uint32_t crc = facet::crc32_update(0, pixels.data(), pixels.size());
            bool duplicate = false;
            for (auto [it, end] = seen.equal_range(crc); it != end; ++it) {
                const std::size_t j = it->second;
                if (!std::equal(pixels.begin(), pixels.end(), c.faces.image(j))) continue;
                const std::string& other = classes[static_cast<std::size_t>(c.faces.labels[j])];
                facet::check(c.faces.labels[j] == label, "corrections conflict: ", c.files[j], " (",
                             other, ") and ", file.string(), " (", classes[std::size_t(label)],
                             ") are the same face with two emotions; remove the wrong one");
                c.duplicates.emplace_back(c.files[j], file.string());
                duplicate = true;
                break;
            }
            if (duplicate) continue;
            seen.emplace(crc, c.faces.size());
            c.faces.add(pixels.data(), label);
            c.files.push_back(file.string());
        }
    }
    facet::check(!c.faces.empty(), "corrections: no face images in ", folder.string(),
                 " (expected FOLDER/<emotion>/*.png)");
    return c;
}

inline Cli correct_cli() {
    Cli cli("correct",
            "Files one correction: copies FACE (any picture of one face; e.g. a crop written by "
            "`fer predict --save-faces`) as a 48 x 48 gray PNG into INTO/<EMOTION>/, where `fer "
            "finetune --corrections INTO` finds it. Usage: fer correct FACE.png EMOTION [--into "
            "DIR]. EMOTION is one of angry, disgust, fear, happy, sad, surprise, neutral.");
    cli.option("into", "DIR", "the corrections folder", "corrections")
        .positional("FACE EMOTION", "the face picture and its right emotion");
    return cli;
}

/// Runs `fer correct`: refuses an unknown emotion (listing the valid ones), an unreadable
/// picture, and a face already filed under another emotion; says so when it is already filed.
inline int run_correct(const Cli& cli) {
    const std::vector<std::string>& args = cli.positionals();
    facet::check(args.size() == 2,
                 "correct: give FACE and EMOTION, e.g. fer correct face.png "
                 "happy (see --help)");
    const std::vector<std::string> classes = fer_class_name_list();
    const int label = fer_class_index(args[1]);
    facet::check(label >= 0, "correct: unknown emotion '", args[1], "' (", emotion_list(classes),
                 ")");
    const std::string& emotion = classes[static_cast<std::size_t>(label)];
    const std::vector<std::uint8_t> pixels =
        facet::to_square_gray(facet::load_image(args[0]), fer_image_side);
    const fs::path into = cli.str("into");
    // The same face already filed: under this emotion, nothing to do; under another, a conflict.
    if (fs::is_directory(into))
        for (const fs::path& dir : facet::detail::sorted_entries(into, true))
            for (const fs::path& file : facet::detail::sorted_entries(dir, false)) {
                if (!facet::detail::has_image_extension(file)) continue;
                std::vector<std::uint8_t> other;
                try {
                    other = facet::to_square_gray(facet::load_image(file), fer_image_side);
                } catch (const facet::Error&) {
                    continue;  // fer finetune reports it
                }
                if (other != pixels) continue;
                facet::check(fer_class_index(dir.filename().string()) == label,
                             "correct: ", args[0], " is already filed as ", file.string(),
                             "; remove that file first to change its emotion");
                std::cout << args[0] << " is already filed as " << file.string() << "\n";
                return 0;
            }
    const fs::path dir = into / emotion;
    fs::create_directories(dir);
    const std::string stem = safe_file_stem(fs::path(args[0]).stem().string());
    fs::path target = dir / (stem + ".png");
    for (int n = 1; fs::exists(target); ++n)
        target = dir / (stem + "-" + std::to_string(n) + ".png");
    facet::write_png(target, pixels.data(), fer_image_side, fer_image_side);
    std::cout << "filed " << args[0] << " as " << emotion << ": " << target.string() << "\n";
    return 0;
}

}  // namespace fer
