//! # sskd-communication
//!
//! `burn-communication` 0.21.0 (Burn's peer-to-peer messaging over WebSockets and its tensor
//! data service) under sskd's name, with a lost wake-up fixed in the tensor download (see the
//! README). `sskd-collective` uses it; the API is burn-communication's.
//!
//! ```
//! use sskd_communication::Address;
//!
//! let orchestrator: Address = "ws://127.0.0.1:3000".parse().unwrap();
//! assert_eq!(orchestrator.to_string(), "ws://127.0.0.1:3000");
//! ```
//!
//! ## Feature flags
//! - `websocket`: the WebSocket protocol;
//! - `data-service`: the tensor data service (peers expose and download tensors);
//! - `tracing`: spans for Burn's tracing.

#[macro_use]
extern crate derive_new;

mod base;
pub use base::*;

pub mod util;

#[cfg(feature = "websocket")]
pub mod websocket;

#[cfg(feature = "data-service")]
pub mod data_service;
