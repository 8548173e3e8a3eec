// libFuzzer target: our image reader around stb_image (decode_image, with the size limits checked
// from the header before any pixel is allocated) and the crop + resample to 48 x 48 that the
// image-folder reader applies to every file. Any input must decode within the limits or throw
// facet::Error; anything else is a crash.
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Smaller limits than the defaults (8192 per side, 2^26 pixels) keep each run fast; the code
    // that enforces them is the same.
    facet::ImageLimits limits;
    limits.max_side = 2048;
    limits.max_pixels = std::size_t{1} << 22;
    try {
        const facet::GrayImage image = facet::decode_image(data, size, "fuzz.img", limits);
        if (image.width == 0 || image.height == 0 || image.width > limits.max_side ||
            image.height > limits.max_side || image.width * image.height > limits.max_pixels ||
            image.pixels.size() != image.width * image.height)
            std::abort();  // the limits were bypassed or the pixels do not match the size
        const std::vector<std::uint8_t> face = facet::to_square_gray(image);
        if (face.size() != facet::fer_image_pixels) std::abort();
    } catch (const facet::Error&) {  // the documented way to refuse bad input
    }
    return 0;
}
