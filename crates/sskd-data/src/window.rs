//! Decoding only the window a crop reads. `RandomResizedCrop` picks its window from the image's
//! size before it looks at a pixel, so a JPEG needs decoding only as far as the window reaches:
//! [`decode_rgb_window`] reads the size from the header, asks the caller for the window, and
//! decodes with `sskd-jpeg`'s region decoding (zune-jpeg, the decoder `image` uses, stopping
//! after the window's last row and transforming only its columns). Inside the window the pixels
//! are those of [`decode_rgb`](crate::folders::decode_rgb) bit for bit; other formats and JPEG
//! layouts are decoded whole.

use std::path::Path;

use image::RgbImage;
use sskd_jpeg::zune_core::bytestream::ZCursor;
use sskd_jpeg::zune_core::colorspace::ColorSpace;
use sskd_jpeg::zune_core::options::DecoderOptions;
use sskd_jpeg::{JpegDecoder, Region};

use crate::folders::decode_bytes_rgb;
use crate::DataError;

/// A crop window in pixels: `(top, left, height, width)`, as `sskd_augment`'s crops take it.
pub type Window = (u32, u32, u32, u32);

/// Decodes image file `path` as far as the window `choose(width, height)` reaches and returns
/// the image (its full size) with the window. Inside the window the pixels are
/// [`decode_rgb`]'s; outside it they are unspecified for JPEGs (decoded by region) and exact
/// for other files (decoded whole). A window that is empty or not inside the image is an error
/// naming the file.
///
/// [`decode_rgb`]: crate::folders::decode_rgb
pub fn decode_rgb_window(
    path: &Path,
    choose: impl FnOnce(u32, u32) -> Window,
) -> Result<(RgbImage, Window), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let decode_error = |reason: String| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let mut decoder = jpeg_decoder(&bytes);
    let is_ycbcr_jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        && decoder.decode_headers().is_ok()
        && decoder.input_colorspace() == Some(ColorSpace::YCbCr);
    if !is_ycbcr_jpeg {
        // PNG, greyscale or CMYK JPEG, or a file `image` should name the fault of.
        let image = decode_bytes_rgb(path, &bytes)?;
        let window = choose(image.width(), image.height());
        check_window(path, window, image.width(), image.height())?;
        return Ok((image, window));
    }
    let (width, height) = decoder.dimensions().expect("headers decoded");
    let (width, height) = (width as u32, height as u32);
    let window = choose(width, height);
    check_window(path, window, width, height)?;
    let (top, left, window_height, window_width) = window;
    let region = Region::new(
        left as usize,
        top as usize,
        window_width as usize,
        window_height as usize,
    );
    let mut pixels = vec![0; decoder.output_buffer_size().expect("headers decoded")];
    decoder
        .decode_region_into(region, &mut pixels)
        .map_err(|e| decode_error(format!("{e:?}")))?;
    let image = RgbImage::from_raw(width, height, pixels).expect("RGB buffer of the image's size");
    Ok((image, window))
}

/// A zune-jpeg decoder (`sskd-jpeg`) of `bytes` with the options `image` 0.25 decodes with,
/// into RGB: what [`decode_rgb_window`] decodes JPEGs with.
pub fn jpeg_decoder(bytes: &[u8]) -> JpegDecoder<ZCursor<&[u8]>> {
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    JpegDecoder::new_with_options(ZCursor::new(bytes), options)
}

fn check_window(path: &Path, window: Window, width: u32, height: u32) -> Result<(), DataError> {
    let (top, left, window_height, window_width) = window;
    let inside = window_width > 0
        && window_height > 0
        && u64::from(left) + u64::from(window_width) <= u64::from(width)
        && u64::from(top) + u64::from(window_height) <= u64::from(height);
    if inside {
        Ok(())
    } else {
        Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: format!(
                "crop window {window_width}x{window_height} at ({left}, {top}) is not inside the \
                 {width}x{height} image"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folders::decode_rgb;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../forks/sskd-jpeg/tests/fixtures")
            .join(name)
    }

    fn window_pixels(image: &RgbImage, (top, left, height, width): Window) -> Vec<u8> {
        (top..top + height)
            .flat_map(|y| (left..left + width).flat_map(move |x| image.get_pixel(x, y).0))
            .collect()
    }

    #[test]
    fn windows_match_the_whole_decode_for_every_layout() {
        let names = [
            "coffee_420_301x203.jpg",
            "cat_422_restart_rows_227x150.jpg",
            "cat_444_restart7_97x61.jpg",
            "coffee_420_progressive_200x120.jpg",
            "coffee_grey_150x100.jpg",
        ];
        for name in names {
            let path = fixture(name);
            let whole = decode_rgb(&path).unwrap();
            for &(top, left, height, width) in &[(0, 0, 1, 1), (3, 5, 40, 33), (17, 31, 30, 60)] {
                let choose = |image_width: u32, image_height: u32| {
                    assert_eq!((image_width, image_height), whole.dimensions(), "{name}");
                    (
                        top,
                        left,
                        height.min(image_height - top),
                        width.min(image_width - left),
                    )
                };
                let (decoded, window) = decode_rgb_window(&path, choose).unwrap();
                assert_eq!(decoded.dimensions(), whole.dimensions(), "{name}");
                assert_eq!(
                    window_pixels(&decoded, window),
                    window_pixels(&whole, window),
                    "{name} {window:?}"
                );
            }
        }
    }

    #[test]
    fn bad_windows_and_files_are_errors_naming_the_file() {
        let path = fixture("coffee_420_301x203.jpg");
        let error = decode_rgb_window(&path, |_, _| (200, 0, 10, 10)).unwrap_err();
        assert!(
            error.to_string().contains("coffee_420_301x203.jpg"),
            "{error}"
        );
        assert!(
            error.to_string().contains("not inside the 301x203 image"),
            "{error}"
        );

        let dir = tempfile::tempdir().unwrap();
        let truncated = dir.path().join("truncated.JPEG");
        std::fs::write(&truncated, &std::fs::read(&path).unwrap()[..40]).unwrap();
        let error = decode_rgb_window(&truncated, |w, h| (0, 0, h, w)).unwrap_err();
        assert!(error.to_string().contains("truncated.JPEG"), "{error}");
        let missing = dir.path().join("missing.JPEG");
        let error = decode_rgb_window(&missing, |w, h| (0, 0, h, w)).unwrap_err();
        assert!(error.to_string().contains("missing.JPEG"), "{error}");
    }

    /// Damaged JPEGs (bytes flipped in the entropy-coded data and the headers, files cut
    /// short): window decoding fails where the whole decode fails, naming the file, and
    /// otherwise gives the whole decode's pixels inside the window.
    #[test]
    fn damaged_jpegs_decode_as_the_whole_decode_does_or_fail_alike() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../forks/sskd-jpeg/tests/fixtures/cat_420_restart5_451x300.jpg");
        let bytes = std::fs::read(&source).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut state = 0x9e37_79b9_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for case in 0..120 {
            let mut damaged = bytes.clone();
            match case % 3 {
                0 => damaged.truncate(next(bytes.len())),
                1 => {
                    for _ in 0..4 {
                        let at = next(bytes.len());
                        damaged[at] ^= 1 << next(8);
                    }
                }
                _ => {
                    let at = next(600.min(bytes.len()));
                    damaged[at] = next(256) as u8;
                }
            }
            let path = dir.path().join(format!("damaged_{case}.JPEG"));
            std::fs::write(&path, &damaged).unwrap();
            let whole = decode_rgb(&path);
            let window = decode_rgb_window(&path, |w, h| (h / 4, w / 3, h / 2, w / 2));
            match (whole, window) {
                (Ok(whole), Ok((decoded, window))) => {
                    let (top, left, height, width) = window;
                    for y in top..top + height {
                        for x in left..left + width {
                            assert_eq!(
                                decoded.get_pixel(x, y),
                                whole.get_pixel(x, y),
                                "case {case}"
                            );
                        }
                    }
                }
                (Err(_), Err(error)) => {
                    assert!(
                        error.to_string().contains(&format!("damaged_{case}.JPEG")),
                        "{error}"
                    );
                }
                (whole, window) => panic!(
                    "case {case}: whole decode {:?}, window decode {:?}",
                    whole.map(|i| i.dimensions()),
                    window.map(|(i, w)| (i.dimensions(), w))
                ),
            }
        }
    }
}
