//! Region-of-interest decoding: sskd-jpeg's addition to zune-jpeg.
//!
//! A baseline JPEG's entropy-coded data must be read in order (each block's DC coefficient is
//! a difference from the previous block's), but the inverse DCT, the chroma upsampling and the
//! colour conversion of a block are needed only where its pixels are. For a region of the image
//! the decoder therefore
//! - stops after the last MCU row the region needs;
//! - reads the MCU rows above the region without inverse-transforming them;
//! - inverse-transforms only the MCU columns the region needs;
//! - colour-converts only the region's pixel columns,
//!
//! keeping one MCU of margin on every side where the chroma is subsampled (the upsampling filter
//! reads the neighbouring chroma samples). The region's pixels are those of a whole decode, bit
//! for bit; the rest of the output is unspecified.

use alloc::format;
use core::ops::Range;

use zune_core::bytestream::ZByteReaderTrait;
use zune_core::colorspace::ColorSpace;

use crate::components::SampleRatios;
use crate::errors::DecodeErrors;
use crate::JpegDecoder;

/// A rectangle of the image in pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First column.
    pub left: usize,
    /// First row.
    pub top: usize,
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
}

impl Region {
    /// The rectangle at (`left`, `top`) of `width` × `height` pixels.
    #[must_use]
    pub const fn new(left: usize, top: usize, width: usize, height: usize) -> Self {
        Self {
            left,
            top,
            width,
            height,
        }
    }

    /// Whether the region is non-empty and inside an image of `width` × `height` pixels.
    #[must_use]
    pub const fn fits(&self, width: usize, height: usize) -> bool {
        self.width > 0
            && self.height > 0
            && self.left < width
            && self.top < height
            && self.width <= width - self.left
            && self.height <= height - self.top
    }
}

/// What the baseline decoder does for a region, in MCUs and pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegionPlan {
    /// MCU rows inverse-transformed and post-processed; rows above are only read, rows from
    /// `rows.end` on are not read at all.
    pub(crate) rows: Range<usize>,
    /// MCU columns inverse-transformed in those rows.
    pub(crate) columns: Range<usize>,
    /// Pixel columns colour-converted.
    pub(crate) pixel_columns: Range<usize>,
}

impl RegionPlan {
    /// The plan for `region` of an image whose MCUs are `8·h_max × 8·v_max` pixels, `mcu_rows`
    /// by `mcu_columns` of them.
    pub(crate) fn new(
        region: Region,
        h_max: usize,
        v_max: usize,
        mcu_rows: usize,
        mcu_columns: usize,
    ) -> Self {
        let (mcu_width, mcu_height) = (8 * h_max, 8 * v_max);
        // Subsampled chroma is upsampled from its neighbours: one more MCU on that side.
        let (column_margin, row_margin) = (usize::from(h_max > 1), usize::from(v_max > 1));
        let last_row = (region.top + region.height - 1) / mcu_height;
        let last_column = (region.left + region.width - 1) / mcu_width;
        Self {
            rows: (region.top / mcu_height).saturating_sub(row_margin)
                ..mcu_rows.min(last_row + 1 + row_margin),
            columns: (region.left / mcu_width).saturating_sub(column_margin)
                ..mcu_columns.min(last_column + 1 + column_margin),
            pixel_columns: region.left..region.left + region.width,
        }
    }

    /// The MCU columns inverse-transformed in MCU row `row`.
    pub(crate) fn columns_of_row(&self, row: usize) -> Range<usize> {
        if self.rows.contains(&row) {
            self.columns.clone()
        } else {
            0..0
        }
    }
}

impl<T: ZByteReaderTrait> JpegDecoder<T> {
    /// Decodes what `region` needs into `out` (the whole image's size, as
    /// [`decode_into`](Self::decode_into)): the region's pixels are those of a whole decode,
    /// the others unspecified. Baseline YCbCr images with the usual subsamplings (4:4:4, 4:2:2,
    /// 4:2:0, 4:4:0) into RGB, RGBA, BGR or BGRA are decoded only as far as the region needs;
    /// any other image (progressive, greyscale, CMYK, …) is decoded whole.
    ///
    /// # Errors
    /// The errors of [`decode_into`](Self::decode_into), and a region that is empty or not
    /// inside the image.
    pub fn decode_region_into(
        &mut self,
        region: Region,
        out: &mut [u8],
    ) -> Result<(), DecodeErrors> {
        self.decode_headers()?;
        let (width, height) = (usize::from(self.width()), usize::from(self.height()));
        if !region.fits(width, height) {
            return Err(DecodeErrors::Format(format!(
                "region {region:?} is not inside the {width}x{height} image"
            )));
        }
        self.region = Some(region);
        let decoded = self.decode_into(out);
        self.region = None;
        decoded
    }

    /// The plan for the region asked for, when this image's layout allows one (`None`: decode
    /// the whole image). `mcu_rows` and `mcu_columns` are the baseline decoder's.
    pub(crate) fn region_plan(&self, mcu_rows: usize, mcu_columns: usize) -> Option<RegionPlan> {
        let region = self.region?;
        let standard_subsampling = matches!(
            self.info.sample_ratio,
            SampleRatios::None | SampleRatios::H | SampleRatios::V | SampleRatios::HV
        );
        let rgb_out = matches!(
            self.options.jpeg_get_out_colorspace(),
            ColorSpace::RGB | ColorSpace::RGBA | ColorSpace::BGR | ColorSpace::BGRA
        );
        let all_in_one_scan = usize::from(self.num_scans) == self.components.len();
        let plain_ycbcr = self.input_colorspace == ColorSpace::YCbCr && self.components.len() == 3;
        (standard_subsampling && rgb_out && all_in_one_scan && plain_ycbcr && self.coeff == 1)
            .then(|| RegionPlan::new(region, self.h_max, self.v_max, mcu_rows, mcu_columns))
    }

    /// Pixel rows the baseline decoder has written before post-processing MCU row `row`
    /// (when a component is upsampled vertically, post-processing holds back each MCU row's
    /// last rows until the next row's chroma is decoded: `post_process`'s own test).
    pub(crate) fn rows_written_before(&self, row: usize) -> usize {
        let rows_per_mcu = 8 * self.v_max * self.coeff;
        let vertically_upsampled = self
            .components
            .iter()
            .any(|c| c.sample_ratio == SampleRatios::HV || c.sample_ratio == SampleRatios::V);
        let held_back = if vertically_upsampled && row > 0 {
            self.v_max * self.coeff
        } else {
            0
        };
        row * rows_per_mcu - held_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keeps_one_mcu_of_margin_only_where_chroma_is_subsampled() {
        // 4:4:4, 8×8 MCUs: rows 20..40 are MCU rows 2..5, columns 9..17 MCU columns 1..3.
        let plan = RegionPlan::new(Region::new(9, 20, 8, 20), 1, 1, 10, 10);
        assert_eq!(plan.rows, 2..5);
        assert_eq!(plan.columns, 1..3);
        assert_eq!(plan.pixel_columns, 9..17);
        // 4:2:0, 16×16 MCUs: one MCU more on each side, clipped to the image.
        let plan = RegionPlan::new(Region::new(0, 20, 40, 20), 2, 2, 4, 5);
        assert_eq!(plan.rows, 0..4);
        assert_eq!(plan.columns, 0..4);
        assert_eq!(plan.columns_of_row(3), 0..4);
        assert_eq!(plan.columns_of_row(4), 0..0);
    }

    #[test]
    fn regions_must_be_non_empty_and_inside_the_image() {
        assert!(Region::new(0, 0, 10, 10).fits(10, 10));
        assert!(!Region::new(1, 0, 10, 10).fits(10, 10));
        assert!(!Region::new(0, 0, 0, 10).fits(10, 10));
        assert!(!Region::new(10, 0, 1, 1).fits(10, 10));
        assert!(!Region::new(0, usize::MAX, 1, 1).fits(10, 10));
    }
}
