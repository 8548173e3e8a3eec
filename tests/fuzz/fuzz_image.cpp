// libFuzzer target: our image reader around stb_image (decode_image, with the size limits checked
// from the header before any pixel is allocated) and the crop + resample (fit_gray) that the
// image readers apply to an image of another size than the data set's: to 48 x 48, and to 32 x 24.
// Any input must decode within the limits or throw facet::Error; anything else is a crash.
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
        if (facet::to_square_gray(image, 48).size() != 48 * 48) std::abort();
        if (facet::fit_gray(image, 32, 24).size() != 32 * 24) std::abort();
    } catch (const facet::Error&) {  // the documented way to refuse bad input
    }
    return 0;
}
