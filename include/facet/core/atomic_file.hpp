// facet/core/atomic_file.hpp — whole-file reads and crash-safe writes. A file is written to a
// temporary name in the same directory, flushed to disk (fsync) and then renamed over the target,
// so a reader (or a crash, or a full disk) sees either the old file or the complete new one.
// Read next: model/serialize.hpp, which builds model files on top of this.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "facet/core/error.hpp"

namespace facet {

namespace detail {
inline std::string errno_text() {
    return std::strerror(errno);
}

/// A temporary name next to `path` that no other writer (thread or process) uses at the same time.
inline std::string temporary_name_for(const std::string& path) {
    static std::atomic<unsigned> counter{0};
    return detail::concat(path, ".tmp.", ::getpid(), ".", counter++);
}

/// Makes the rename itself durable: fsync of the directory that holds the file.
inline void sync_directory_of(const std::string& path) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;  // durability of the rename is best effort; the data itself is synced
    ::fsync(fd);
    ::close(fd);
}
}  // namespace detail

/// Replaces the file at `path` with `size` bytes from `data`, atomically: on any failure (no space,
/// no permission, file-size limit) the old file is left as it was, the temporary file is removed
/// and a facet::Error names the path and the reason.
inline void write_file_atomically(const std::string& path, const void* data, std::size_t size) {
    const std::string tmp = detail::temporary_name_for(path);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    check(fd >= 0, "cannot write '", path, "': creating '", tmp,
          "' failed: ", detail::errno_text());

    auto fail = [&](const char* step) {
        const std::string reason = detail::errno_text();
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(detail::concat("cannot write '", path, "': ", step, " failed: ", reason,
                                   " (the old file, if any, is unchanged)"));
    };
    const auto* bytes = static_cast<const unsigned char*>(data);
    std::size_t written = 0;
    while (written < size) {
        const ::ssize_t n = ::write(fd, bytes + written, size - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            fail("write");
        }
        written += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) fail("fsync");
    if (::close(fd) != 0) {
        const std::string reason = detail::errno_text();
        ::unlink(tmp.c_str());
        throw Error(detail::concat("cannot write '", path, "': close failed: ", reason));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string reason = detail::errno_text();
        ::unlink(tmp.c_str());
        throw Error(
            detail::concat("cannot write '", path, "': rename from '", tmp, "' failed: ", reason));
    }
    detail::sync_directory_of(path);
}

/// The same for a byte vector.
inline void write_file_atomically(const std::string& path,
                                  const std::vector<unsigned char>& bytes) {
    write_file_atomically(path, bytes.data(), bytes.size());
}

/// Removes the temporary files that writes of `path` by processes no longer running left behind
/// (a writer killed between creating its temporary and the rename; the file at `path` itself is
/// then the old, complete one). Temporaries of live processes are kept: they may still be renamed.
/// Returns how many files were removed. Only meaningful for writers on this machine, since it
/// looks their process ids up here.
inline std::size_t remove_stale_temporaries(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    const std::string prefix = target.filename().string() + ".tmp.";
    std::error_code ec;
    std::size_t removed = 0;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        // The name is <file>.tmp.<pid>.<counter> (temporary_name_for).
        const std::string rest = name.substr(prefix.size());
        const std::size_t dot = rest.find('.');
        if (dot == 0 || dot == std::string::npos ||
            rest.find_first_not_of("0123456789.") != std::string::npos)
            continue;
        const long pid = std::strtol(rest.substr(0, dot).c_str(), nullptr, 10);
        if (pid <= 0 || pid == ::getpid()) continue;
        if (::kill(static_cast<::pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive
        if (fs::remove(entry.path(), ec)) ++removed;
    }
    return removed;
}

/// Reads a whole file. Files larger than `max_bytes` are refused with an Error rather than read,
/// so a wrong path (a device, a huge unrelated file) cannot exhaust memory.
inline std::vector<unsigned char> read_whole_file(const std::string& path, std::size_t max_bytes) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    check(fd >= 0, "cannot open '", path, "': ", detail::errno_text());
    struct ::stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        ::close(fd);
        throw Error(detail::concat("cannot read '", path, "': not a regular file"));
    }
    const auto size = static_cast<std::size_t>(info.st_size);
    if (size > max_bytes) {
        ::close(fd);
        throw Error(detail::concat("cannot read '", path, "': ", size,
                                   " bytes is more than the limit of ", max_bytes));
    }
    std::vector<unsigned char> bytes(size);
    std::size_t got = 0;
    while (got < size) {
        const ::ssize_t n = ::read(fd, bytes.data() + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const std::string reason =
                n == 0 ? std::string("file shrank while reading") : detail::errno_text();
            ::close(fd);
            throw Error(detail::concat("cannot read '", path, "': ", reason));
        }
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return bytes;
}

}  // namespace facet
