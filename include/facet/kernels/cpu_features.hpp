// facet/kernels/cpu_features.hpp — what this CPU (and its OS) offers, asked once at run time: the
// vector instruction sets (so that a program built without -march flags still uses AVX-512), the
// CPU's model name and its data-cache sizes (from which gemm.hpp sizes its blocks).
// Read next: kernels/gemm_pack.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

/// facet's GEMM compiles the AVX kernels with per-function target attributes; they exist only
/// on x86 with GCC or Clang. Elsewhere only the portable kernel is built.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FACET_GEMM_HAVE_X86_KERNELS 1
#include <cpuid.h>
#else
#define FACET_GEMM_HAVE_X86_KERNELS 0
#endif

namespace facet {

/// The instruction sets facet's kernels care about, or may soon. Each AVX-512 extension implies
/// avx512f, and the AMX ones that the OS saves the tile registers (XCR0 bits 17 and 18); using
/// AMX also needs the process to ask Linux for the tile state (arch_prctl), which nothing does yet.
struct CpuFeatures {
    bool avx2_fma = false;     ///< AVX2 and FMA3 (Haswell, Zen 1 and later)
    bool avx512f = false;      ///< AVX-512 Foundation, with the OS saving the zmm registers
    bool avx512_bf16 = false;  ///< AVX512-BF16: bf16 dot products into fp32
    bool avx512_vnni = false;  ///< AVX512-VNNI: int8 / int16 dot products
    bool avx512_fp16 = false;  ///< AVX512-FP16: arithmetic on half-precision floats
    bool avx_vnni = false;     ///< AVX-VNNI: the int8 dot products on 256-bit registers
    bool amx_tile = false;     ///< AMX tile registers, enabled by the OS
    bool amx_bf16 = false;     ///< AMX bf16 tile products
    bool amx_int8 = false;     ///< AMX int8 tile products
};

/// Sizes in bytes of the caches of one core (L3: of the whole cache the core sees).
struct CacheSizes {
    std::size_t l1d = 0, l2 = 0, l3 = 0;
};

namespace detail {

#if FACET_GEMM_HAVE_X86_KERNELS
struct CpuidRegisters {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

/// CPUID leaf / subleaf, or all zeros when the leaf is beyond the CPU's highest one.
inline CpuidRegisters cpuid(unsigned leaf, unsigned subleaf = 0) {
    CpuidRegisters r;
    const unsigned highest = __get_cpuid_max(leaf & 0x80000000u, nullptr);
    if (highest == 0 || leaf > highest) return r;
    __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
    return r;
}

/// XCR0, the state components the OS saves on a context switch (0 without OSXSAVE).
inline std::uint64_t xcr0() {
    if (!((cpuid(1).ecx >> 27) & 1u)) return 0;
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (std::uint64_t(hi) << 32) | lo;
}

inline bool bit(unsigned value, int index) {
    return ((value >> index) & 1u) != 0;
}

/// Caches from a deterministic-cache-parameters leaf (4 on Intel, 0x8000001D on AMD): each
/// subleaf describes one cache until type 0.
inline CacheSizes caches_from_leaf(unsigned leaf) {
    CacheSizes c;
    for (unsigned i = 0; i < 16; ++i) {
        const CpuidRegisters r = cpuid(leaf, i);
        const unsigned type = r.eax & 0x1fu, level = (r.eax >> 5) & 0x7u;
        if (type == 0) break;
        if (type == 2) continue;  // instructions
        const std::size_t bytes = std::size_t((r.ebx >> 22) + 1) * (((r.ebx >> 12) & 0x3ffu) + 1) *
                                  ((r.ebx & 0xfffu) + 1) * (std::size_t(r.ecx) + 1);
        if (level == 1) c.l1d = bytes;
        if (level == 2) c.l2 = bytes;
        if (level == 3) c.l3 = bytes;
    }
    return c;
}
#endif

/// The size of the data (or unified) cache of `level` from Linux's sysfs (index0.. under cpu0),
/// 0 when absent.
inline std::size_t sysfs_cache_size(int level) {
    for (int i = 0; i < 8; ++i) {
        const std::string dir =
            "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
        std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
        int l = 0;
        std::string type, size;
        if (!(level_file >> l) || !(type_file >> type) || !(size_file >> size)) continue;
        if (l != level || type == "Instruction") continue;
        std::size_t value = 0, pos = 0;
        while (pos < size.size() && size[pos] >= '0' && size[pos] <= '9')
            value = value * 10 + std::size_t(size[pos++] - '0');
        if (pos < size.size() && size[pos] == 'K') value *= 1024;
        if (pos < size.size() && size[pos] == 'M') value *= 1024 * 1024;
        if (value > 0) return value;
    }
    return 0;
}

/// Fills the sizes CPUID left at 0 from sysconf, then sysfs, then defaults typical of a
/// current desktop or server core (32 KiB, 1 MiB, 8 MiB).
inline void complete_cache_sizes(CacheSizes& c) {
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    auto conf = [](int name) {
        const long v = sysconf(name);
        return v > 0 ? std::size_t(v) : std::size_t(0);
    };
    if (!c.l1d) c.l1d = conf(_SC_LEVEL1_DCACHE_SIZE);
    if (!c.l2) c.l2 = conf(_SC_LEVEL2_CACHE_SIZE);
    if (!c.l3) c.l3 = conf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (!c.l1d) c.l1d = sysfs_cache_size(1);
    if (!c.l2) c.l2 = sysfs_cache_size(2);
    if (!c.l3) c.l3 = sysfs_cache_size(3);
    if (!c.l1d) c.l1d = 32 * 1024;
    if (!c.l2) c.l2 = 1024 * 1024;
    if (!c.l3) c.l3 = 8 * 1024 * 1024;
}

}  // namespace detail

/// The features of the running CPU, detected on the first call. (GCC's __builtin_cpu_supports
/// also checks, through XGETBV, that the OS preserves the wide registers.)
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = [] {
        CpuFeatures f;
#if FACET_GEMM_HAVE_X86_KERNELS
        __builtin_cpu_init();
        f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f");
        using detail::bit;
        const detail::CpuidRegisters l7 = detail::cpuid(7, 0);
        const detail::CpuidRegisters l7s1 =
            l7.eax >= 1 ? detail::cpuid(7, 1) : detail::CpuidRegisters{};
        f.avx512_vnni = f.avx512f && bit(l7.ecx, 11);
        f.avx512_fp16 = f.avx512f && bit(l7.edx, 23);
        f.avx512_bf16 = f.avx512f && bit(l7s1.eax, 5);
        f.avx_vnni = f.avx2_fma && bit(l7s1.eax, 4);
        const std::uint64_t tile_state = (std::uint64_t(1) << 17) | (std::uint64_t(1) << 18);
        const bool os_saves_tiles = (detail::xcr0() & tile_state) == tile_state;
        f.amx_tile = os_saves_tiles && bit(l7.edx, 24);
        f.amx_bf16 = f.amx_tile && bit(l7.edx, 22);
        f.amx_int8 = f.amx_tile && bit(l7.edx, 25);
#endif
        return f;
    }();
    return features;
}

/// The CPU's model name as it reports it (CPUID 0x80000002-4), "unknown CPU" when it does not.
inline const std::string& cpu_model() {
    static const std::string model = [] {
        std::string name;
#if FACET_GEMM_HAVE_X86_KERNELS
        if (static_cast<unsigned>(__get_cpuid_max(0x80000000u, nullptr)) >= 0x80000004u)
            for (unsigned leaf = 0x80000002u; leaf <= 0x80000004u; ++leaf) {
                const detail::CpuidRegisters r = detail::cpuid(leaf);
                for (unsigned reg : {r.eax, r.ebx, r.ecx, r.edx})
                    for (int b = 0; b < 4; ++b) name += char((reg >> (8 * b)) & 0xffu);
            }
#endif
        name = name.substr(0, name.find('\0'));
        const auto first = name.find_first_not_of(' '), last = name.find_last_not_of(' ');
        return first == std::string::npos ? std::string("unknown CPU")
                                          : name.substr(first, last - first + 1);
    }();
    return model;
}

/// The data-cache sizes of the running CPU, detected on the first call: CPUID's cache leaves
/// (4 on Intel, 0x8000001D on AMD), else sysconf or Linux's sysfs, else defaults; never 0.
inline const CacheSizes& cpu_caches() {
    static const CacheSizes caches = [] {
        CacheSizes c;
#if FACET_GEMM_HAVE_X86_KERNELS
        const detail::CpuidRegisters vendor = detail::cpuid(0);
        const bool intel = vendor.ebx == 0x756e6547u;  // "Genu"(ineIntel)
        const bool amd = vendor.ebx == 0x68747541u;    // "Auth"(enticAMD)
        if (intel && vendor.eax >= 4)
            c = detail::caches_from_leaf(4);
        else if (amd && detail::bit(detail::cpuid(0x80000001u).ecx, 22))  // topology extensions
            c = detail::caches_from_leaf(0x8000001Du);
#endif
        detail::complete_cache_sizes(c);
        return c;
    }();
    return caches;
}

}  // namespace facet
