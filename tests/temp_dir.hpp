// tests/temp_dir.hpp — what the tests share for files: a fresh folder under the system temp
// folder, removed when the test ends; named scratch folders under one folder per test program,
// removed when the program ends; and a way to write a text file.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace facet_test {

/// A fresh folder named <prefix><pid>_<n> under the system temp folder, removed with its contents
/// at the end of the test.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& prefix = "facet_test_") {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               (prefix + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

/// This program's folder under the system temp folder, removed when the program ends, so the runs
/// and models the tests write (hundreds of MB) are never left behind.
inline const std::filesystem::path& scratch_root() {
    static const struct Root {
        std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("facet_test_" + std::to_string(::getpid()));
        ~Root() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    } root;
    return root.path;
}

/// A fresh, empty folder `name` under scratch_root().
inline std::string scratch(const std::string& name) {
    const std::filesystem::path p = scratch_root() / name;
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p.string();
}

/// Writes `text` to the file `p`, creating its folder.
inline void write_text(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

}  // namespace facet_test
