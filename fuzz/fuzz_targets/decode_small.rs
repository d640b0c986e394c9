//! Fuzz target: pixel decoding (JPEG, PNG, WebP, HEIF/AVIF) under small dimension limits, so
//! that each execution is fast and the size checks before allocation are exercised on every
//! header the mutator invents. A panic, hang, abort or allocation beyond the limits is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellscan::forensics::decode::{decode, DecodeError, DecodeLimits};

const LIMITS: DecodeLimits = DecodeLimits { max_pixels: 256 * 256, max_side: 512 };

fuzz_target!(|data: &[u8]| {
    match decode(data, &LIMITS) {
        Ok(image) => {
            assert!(image.width <= LIMITS.max_side && image.height <= LIMITS.max_side);
            assert!(u64::from(image.width) * u64::from(image.height) <= LIMITS.max_pixels);
            assert_eq!(image.rgb.dimensions(), (image.width, image.height));
        }
        Err(DecodeError::TooLarge { width, height, .. }) => {
            assert!(width > LIMITS.max_side || height > LIMITS.max_side
                || u64::from(width) * u64::from(height) > LIMITS.max_pixels);
        }
        Err(_) => {}
    }
});
