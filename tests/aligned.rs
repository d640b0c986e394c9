//! Aligned training pairs: the TAEF2 autoencoder (`../shared/taesd`) loads, a round trip keeps
//! a photo (golden PSNR), wrong files are clear errors, reconstructions are cached, and training
//! on aligned pairs runs and its loss decreases.
mod common;

use std::path::{Path, PathBuf};

use image::{imageops, RgbImage};
use tellscan::eval::read_labels;
use tellscan::forensics::decode::{decode, DecodeLimits};
use tellscan::learn::aligned::{region, Reconstructor};
use tellscan::learn::taesd::{psnr, Autoencoder, DECODER_FILE, ENCODER_FILE};
use tellscan::learn::train::{attach_pairs, load_examples, train, Example, TrainOptions};

fn taesd_dir() -> PathBuf {
    PathBuf::from("../shared/taesd")
}

fn photo(relative: &str) -> RgbImage {
    let bytes = std::fs::read(Path::new("../shared/corpus").join(relative)).expect("corpus photo");
    decode(&bytes, &DecodeLimits::default()).expect("decodes").rgb
}

/// The PSNR a round trip of the fixture crop gives (measured when the test was written).
const GOLDEN_PSNR: f64 = 30.479;

#[test]
fn a_round_trip_through_taef2_keeps_the_photo() {
    let autoencoder = Autoencoder::load_dir(&taesd_dir()).expect("the TAEF2 pair loads");
    assert_eq!(autoencoder.latent_channels, 32);
    let full = photo("real/exif-samples/jpg/Reconyx_HC500_Hyperfire.jpg");
    let crop = imageops::crop_imm(&full, 512, 256, 132, 100).to_image();
    let decoded = autoencoder.round_trip(&crop).expect("round trip");
    // both sides cut down to multiples of 8
    assert_eq!(decoded.dimensions(), (128, 96));
    let db = psnr(&crop, &decoded);
    assert!(db > 24.0, "the reconstruction looks like the photo: {db:.2} dB");
    assert!(db < 50.0, "the reconstruction is not the photo itself: {db:.2} dB");
    assert!((db - GOLDEN_PSNR).abs() < 0.05, "PSNR {db:.3} dB, recorded {GOLDEN_PSNR:.3} dB");
    // deterministic
    assert_eq!(decoded, autoencoder.round_trip(&crop).unwrap());
    // a 256 px square, which candle 0.9.2's convolution would turn into noise, loses a column
    // of latents and comes back as a photo
    let square = imageops::crop_imm(&full, 640, 384, 256, 256).to_image();
    let decoded = autoencoder.round_trip(&square).expect("round trip");
    assert_eq!(decoded.dimensions(), (248, 256));
    let db = psnr(&square, &decoded);
    assert!(db > 24.0, "a 256 px square comes back as a photo: {db:.2} dB");
}

#[test]
fn wrong_or_missing_autoencoder_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Autoencoder::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains(ENCODER_FILE) && err.contains("does not exist"), "{err}");
    // a file that is not a PyTorch archive
    std::fs::write(dir.path().join(ENCODER_FILE), b"not a zip").unwrap();
    std::fs::write(dir.path().join(DECODER_FILE), b"not a zip").unwrap();
    let err = format!("{:#}", Autoencoder::load_dir(dir.path()).unwrap_err());
    assert!(err.contains("not a PyTorch state dict"), "{err}");
    // an encoder and a decoder swapped: the layouts do not match
    let encoder = taesd_dir().join(ENCODER_FILE);
    let decoder = taesd_dir().join(DECODER_FILE);
    let err = format!("{:#}", Autoencoder::load(&decoder, &encoder).unwrap_err());
    assert!(err.contains("14.weight") || err.contains("1.weight"), "{err}");
}

/// The three smallest real photos of the corpus.
fn small_real_examples() -> Vec<Example> {
    let rows = read_labels(Path::new("../shared/corpus/labels.csv")).expect("corpus labels");
    let mut real: Vec<_> = rows.into_iter().filter(|r| !r.label.is_ai()).collect();
    real.sort_by_key(|r| std::fs::metadata(&r.path).map(|m| m.len()).unwrap_or(u64::MAX));
    real.truncate(3);
    load_examples(&real, "labels.csv")
}

#[test]
fn reconstructions_are_cached_and_aligned_training_lowers_the_loss() {
    let cache = tempfile::tempdir().unwrap();
    let reconstructor = Reconstructor::new(&taesd_dir(), cache.path()).expect("autoencoder loads");
    let mut examples = small_real_examples();
    assert_eq!(examples.len(), 3);
    let report = attach_pairs(&mut examples, &reconstructor);
    let paired = examples.iter().filter(|e| e.pair.is_some()).count();
    assert!(paired >= 2, "most small photos get a pair: {paired}");
    assert_eq!((report.cached, report.computed), (0, paired));
    assert!(report.mean_psnr > 24.0, "{report:?}");
    for e in examples.iter() {
        if let Some(pair) = &e.pair {
            let (x, y, side) = region(&e.path, e.pixels.width(), e.pixels.height()).unwrap();
            let (w, h) = pair.decoded.dimensions();
            assert!(h == side && (side - 8..=side).contains(&w), "{w}x{h} from a {side} px region");
            assert_eq!(pair.real, imageops::crop_imm(&e.pixels, x, y, w, h).to_image());
            assert_ne!(pair.real, pair.decoded);
        }
    }
    let files = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(files, paired, "one cached PNG per pair, no partial files left");
    // a second pass reads every pair from the cache, identical
    let mut again = small_real_examples();
    let second = attach_pairs(&mut again, &reconstructor);
    assert_eq!((second.cached, second.computed), (paired, 0));
    for (a, b) in examples.iter().zip(&again) {
        assert_eq!(a.pair.as_ref().map(|p| &p.decoded), b.pair.as_ref().map(|p| &p.decoded));
    }

    // real photos against their own reconstructions only: nothing but the decoder differs
    let refs: Vec<&Example> = examples.iter().collect();
    let options = TrainOptions { synthetic: false, aligned: true, ..common::quick_training(60) };
    let trained = train(&refs, &options).expect("training runs");
    common::assert_the_loss_decreases(&trained.losses, 60);
}
