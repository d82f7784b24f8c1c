//! Region decoding against the `image` crate's whole decode (zune-jpeg 0.5.15, the code this
//! crate copies): the region's pixels must be bit for bit the same, at many regions of JPEGs of
//! every subsampling the region decoder handles (Pillow's fixtures, `tools/make_jpeg_fixtures.py`)
//! — and the decoder must really skip what the region does not need.

use std::path::PathBuf;

use sskd_jpeg::zune_core::bytestream::ZCursor;
use sskd_jpeg::zune_core::colorspace::ColorSpace;
use sskd_jpeg::zune_core::options::DecoderOptions;
use sskd_jpeg::{JpegDecoder, Region};

/// Fixtures the decoder decodes by region (baseline YCbCr 4:4:4, 4:2:2, 4:2:0, 4:4:0).
const BY_REGION: [&str; 9] = [
    "coffee_444_301x203.jpg",
    "coffee_422_301x203.jpg",
    "coffee_420_301x203.jpg",
    "coffee_420_256x160.jpg",
    "coffee_420_13x29.jpg",
    "cat_420_restart5_451x300.jpg",
    "cat_422_restart_rows_227x150.jpg",
    "cat_444_restart7_97x61.jpg",
    "coffee_440_301x203.jpg",
];

/// Fixtures it decodes whole (progressive, greyscale, 4:1:1).
const WHOLE: [&str; 3] = [
    "coffee_420_progressive_200x120.jpg",
    "coffee_grey_150x100.jpg",
    "coffee_411_301x203.jpg",
];

/// A byte no decoded pixel of these photographs has at every position of a row: what the
/// output buffer holds before decoding.
const UNTOUCHED: u8 = 0xA5;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `image` crate's decode to RGB (what sskd decoded every ImageNet file with before).
fn whole_rgb(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes).unwrap().into_rgb8()
}

/// The options `image` decodes with, into `colorspace`.
fn options(colorspace: ColorSpace) -> DecoderOptions {
    DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(colorspace)
}

/// `region` decoded into a buffer of the image's size filled with [`UNTOUCHED`] first.
fn decode_region(bytes: &[u8], region: Region, colorspace: ColorSpace) -> Vec<u8> {
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options(colorspace));
    decoder.decode_headers().unwrap();
    let mut out = vec![UNTOUCHED; decoder.output_buffer_size().unwrap()];
    decoder.decode_region_into(region, &mut out).unwrap();
    out
}

/// Regions of a `width` × `height` image: the whole image, its corners' pixels, edges on and
/// off MCU boundaries, and a deterministic spread of rectangles of every size.
fn regions(width: usize, height: usize) -> Vec<Region> {
    let mut regions = vec![
        Region::new(0, 0, width, height),
        Region::new(0, 0, 1, 1),
        Region::new(width - 1, height - 1, 1, 1),
        Region::new(width - 1, 0, 1, height),
        Region::new(0, height - 1, width, 1),
        Region::new(0, 0, width.min(16), height.min(16)),
        Region::new(
            width / 2,
            height / 2,
            width - width / 2,
            height - height / 2,
        ),
    ];
    for &(left, top) in &[(7, 15), (8, 16), (9, 17), (15, 31), (16, 32), (17, 33)] {
        if left < width && top < height {
            regions.push(Region::new(
                left,
                top,
                (width - left).min(40),
                (height - top).min(24),
            ));
        }
    }
    let mut state = 0x2545_f491_u64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for _ in 0..120 {
        let (region_width, region_height) = (1 + next(width), 1 + next(height));
        let (left, top) = (
            next(width - region_width + 1),
            next(height - region_height + 1),
        );
        regions.push(Region::new(left, top, region_width, region_height));
    }
    regions
}

/// The region's pixels of an image `width` pixels wide with `channels` bytes a pixel.
fn region_pixels(pixels: &[u8], width: usize, channels: usize, region: Region) -> Vec<u8> {
    (region.top..region.top + region.height)
        .flat_map(|row| {
            let start = (row * width + region.left) * channels;
            pixels[start..start + region.width * channels]
                .iter()
                .copied()
        })
        .collect()
}

fn check_regions(name: &str, colorspace: ColorSpace, channels: usize) {
    let bytes = fixture(name);
    let whole = whole_rgb(&bytes);
    let (width, height) = (whole.width() as usize, whole.height() as usize);
    for region in regions(width, height) {
        let decoded = decode_region(&bytes, region, colorspace);
        let ours = region_pixels(&decoded, width, channels, region);
        let expected: Vec<u8> = region_pixels(whole.as_raw(), width, 3, region)
            .chunks_exact(3)
            .flat_map(|rgb| match colorspace {
                ColorSpace::RGB => rgb.to_vec(),
                ColorSpace::RGBA => vec![rgb[0], rgb[1], rgb[2], 255],
                ColorSpace::BGR => vec![rgb[2], rgb[1], rgb[0]],
                other => panic!("no reference for {other:?}"),
            })
            .collect();
        assert!(
            ours == expected,
            "{name}: region {region:?} ({colorspace:?}) differs from the whole decode"
        );
    }
}

#[test]
fn regions_are_pixel_identical_to_the_whole_decode() {
    for name in BY_REGION.iter().chain(&WHOLE) {
        check_regions(name, ColorSpace::RGB, 3);
    }
}

#[test]
fn regions_in_four_channel_and_bgr_output_are_identical_too() {
    for name in ["coffee_420_301x203.jpg", "cat_444_restart7_97x61.jpg"] {
        check_regions(name, ColorSpace::RGBA, 4);
        check_regions(name, ColorSpace::BGR, 3);
    }
}

/// Whether any byte of pixel rows `rows` (of `width` × 3 bytes) was written.
fn rows_touched(pixels: &[u8], width: usize, rows: std::ops::Range<usize>) -> bool {
    pixels[rows.start * width * 3..rows.end * width * 3]
        .iter()
        .any(|&byte| byte != UNTOUCHED)
}

#[test]
fn the_decoder_skips_what_the_region_does_not_need() {
    // 4:2:0, 16×16 MCUs: rows 40..60 are MCU rows 2 and 3; with one MCU row of margin on
    // each side MCU rows 1..=4 are decoded. Nothing from row 80 on is written; above, only
    // rows 14 and 15 (MCU row 0's last two rows, which vertically subsampled decoding writes
    // with MCU row 1); and in the decoded rows only the region's columns (from column 96, the
    // 16-pixel conversion that holds column 100).
    let bytes = fixture("coffee_420_301x203.jpg");
    let region = Region::new(100, 40, 50, 20);
    let decoded = decode_region(&bytes, region, ColorSpace::RGB);
    assert!(
        !rows_touched(&decoded, 301, 80..203),
        "rows below the region were decoded"
    );
    assert!(
        !rows_touched(&decoded, 301, 0..14),
        "rows above the region were converted"
    );
    let left_of_region = &decoded[50 * 301 * 3..(50 * 301 + 64) * 3];
    assert!(
        left_of_region.iter().all(|&byte| byte == UNTOUCHED),
        "columns left of the region were converted"
    );
    // Every layout decoded by region stops there (MCUs at most 16 high, one of margin).
    for name in BY_REGION {
        let bytes = fixture(name);
        let (width, height) = whole_rgb(&bytes).dimensions();
        if width >= 160 && height >= 100 {
            let decoded = decode_region(&bytes, region, ColorSpace::RGB);
            let rows = 80..height as usize;
            assert!(!rows_touched(&decoded, width as usize, rows), "{name}");
        }
    }
    // Progressive, greyscale and 4:1:1 files are decoded whole.
    for name in WHOLE {
        let bytes = fixture(name);
        let whole = whole_rgb(&bytes);
        let (width, height) = (whole.width() as usize, whole.height() as usize);
        let decoded = decode_region(&bytes, Region::new(0, 0, 1, 1), ColorSpace::RGB);
        assert!(rows_touched(&decoded, width, height - 1..height), "{name}");
    }
}

#[test]
fn regions_outside_the_image_are_errors() {
    let bytes = fixture("coffee_444_301x203.jpg");
    for region in [
        Region::new(0, 0, 302, 1),
        Region::new(0, 203, 1, 1),
        Region::new(5, 5, 0, 3),
    ] {
        let mut decoder =
            JpegDecoder::new_with_options(ZCursor::new(&bytes), options(ColorSpace::RGB));
        let mut out = vec![0; 301 * 203 * 3];
        let error = decoder.decode_region_into(region, &mut out).unwrap_err();
        assert!(format!("{error:?}").contains("301x203"), "{error:?}");
    }
}
