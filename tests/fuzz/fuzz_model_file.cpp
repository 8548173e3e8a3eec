// libFuzzer target: the model-file loader (decode_model_file, what load() runs on a file's bytes)
// and the checkpoint loader (decode_checkpoint, what load_checkpoint() runs), for both format
// versions (the seeds, from make_fuzz_corpus, hold files of format 1 and 2: typed nested configs,
// f16 / bf16 / int8 tensors, provenance). Each input is tried
// twice: as is (exercising the header, size and checksum checks) and with its size field and
// CRC-32 repaired, so that mutations reach the parser behind the checksum. Any input must load or
// throw facet::Error; anything else is a crash.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "facet/core/crc32.hpp"
#include "facet/model/serialize.hpp"

namespace {

void try_load(const std::vector<unsigned char>& bytes) {
    try {
        facet::ModelFile<float> m = facet::decode_model_file<float>(bytes, "fuzz.fmdl");
        (void)m;
    } catch (const facet::Error&) {  // the documented way to refuse bad input
    }
    try {
        facet::Checkpoint<float> c = facet::decode_checkpoint<float>(bytes, "fuzz.fckp");
        (void)c;
    } catch (const facet::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<unsigned char> bytes(data, data + size);
    try_load(bytes);

    constexpr std::size_t header = facet::serial::header_size, crc = facet::serial::crc_size;
    if (bytes.size() >= header + crc) {
        const std::uint64_t total = bytes.size();
        for (std::size_t i = 0; i < 8; ++i)
            bytes[12 + i] = static_cast<unsigned char>(total >> (8 * i));
        const std::uint32_t sum = facet::crc32(bytes.data(), bytes.size() - crc);
        for (std::size_t i = 0; i < 4; ++i)
            bytes[bytes.size() - crc + i] = static_cast<unsigned char>(sum >> (8 * i));
        try_load(bytes);
    }
    return 0;
}
