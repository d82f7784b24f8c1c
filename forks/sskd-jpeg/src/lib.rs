/*
 * Copyright (c) 2023.
 *
 * This software is free software;
 *
 * You can redistribute it or modify it under terms of the MIT, Apache License or Zlib license
 */

//! # sskd-jpeg
//!
//! [zune-jpeg](https://github.com/etemesi254/zune-image/tree/dev/crates/zune-jpeg) 0.5.15 (a
//! fast, safe JPEG decoder: the one the `image` crate uses) under sskd's name, with one
//! addition: **region-of-interest decoding**. [`JpegDecoder::decode_region_into`] decodes only
//! what a rectangle of the image needs — it stops after the rectangle's last MCU row, reads the
//! rows above without inverse-transforming them, and inverse-transforms and colour-converts
//! only the rectangle's columns — and the rectangle's pixels are bit for bit those of a whole
//! decode. Training pipelines that crop before they resize (`RandomResizedCrop`) need only the
//! crop: this is the region decoding that NVIDIA DALI's ImageNet loaders do, without changing a
//! pixel. Everything else is zune-jpeg's API (see the README for what differs).
//!
//! ```
//! use sskd_jpeg::zune_core::bytestream::ZCursor;
//! use sskd_jpeg::zune_core::colorspace::ColorSpace;
//! use sskd_jpeg::zune_core::options::DecoderOptions;
//! use sskd_jpeg::{JpegDecoder, Region};
//!
//! # let mut encoded = Vec::new();
//! # let gradient = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
//! # image::codecs::jpeg::JpegEncoder::new(&mut encoded).encode_image(&gradient).unwrap();
//! let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
//! let mut whole = JpegDecoder::new_with_options(ZCursor::new(&encoded), options);
//! let whole = whole.decode().unwrap();
//!
//! // The 20×16 rectangle at (30, 8): only what it needs is decoded.
//! let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&encoded), options);
//! let mut pixels = vec![0; 64 * 48 * 3];
//! decoder.decode_region_into(Region::new(30, 8, 20, 16), &mut pixels).unwrap();
//! for row in 8..24 {
//!     let inside = row * 64 * 3 + 30 * 3..row * 64 * 3 + 50 * 3;
//!     assert_eq!(pixels[inside.clone()], whole[inside]);
//! }
//! ```
//!
//! ## Feature flags
//! - `x86` (default): SSE/AVX2 inverse DCT, upsampling and colour conversion, chosen at run
//!   time;
//! - `neon` (default): the NEON versions on AArch64;
//! - `std` (default): `std` support in zune-core;
//! - `log`: zune-core's log messages;
//! - `portable_simd`: `std::simd` upsampling (nightly Rust).

// zune-jpeg's code, kept as it is written (sskd's clippy settings would rewrite it).
#![allow(clippy::all, clippy::pedantic)]
// no_std compatibility
#![deny(clippy::std_instead_of_alloc, clippy::alloc_instead_of_core)]
#![cfg_attr(not(any(feature = "x86", feature = "neon")), forbid(unsafe_code))]
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(feature = "portable_simd", feature(portable_simd))]
#![macro_use]
extern crate alloc;
extern crate core;

pub use zune_core;

pub use crate::components::SampleRatios;
pub use crate::decoder::{ImageInfo, JpegDecoder};
pub use crate::marker::Marker;
pub use crate::region::Region;
mod bitstream;
mod color_convert;
mod components;
mod decoder;
pub mod errors;
mod headers;
mod huffman;
#[cfg(not(fuzzing))]
mod idct;
#[cfg(fuzzing)]
pub mod idct;
mod marker;
mod mcu;
mod mcu_prog;
mod misc;
mod region;
mod unsafe_utils;
mod unsafe_utils_avx2;
mod unsafe_utils_neon;
mod upsampler;
mod worker;
