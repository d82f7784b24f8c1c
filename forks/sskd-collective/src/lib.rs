//! # sskd-collective
//!
//! `burn-collective` 0.21.0 (Burn's collective operations: all-reduce, reduce and broadcast over
//! the devices of a node and across nodes) under sskd's name, with the fixes that training
//! across machines needs: the global barrier resets after every operation (0.21.0 deadlocks at
//! the second all-reduce across nodes) and no wake-up is lost (see the README). The API is
//! burn-collective's.
//!
//! ```
//! use sskd_collective::{AllReduceStrategy, CollectiveConfig};
//!
//! let address = "ws://127.0.0.1:3000".parse().unwrap();
//! // One device on each of two nodes; `register` then joins this process to the group.
//! let config = CollectiveConfig::default()
//!     .with_num_devices(1)
//!     .with_num_nodes(2)
//!     .with_global_address(address)
//!     .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
//! assert!(format!("{config:?}").contains("num_nodes: Some(2)"));
//! ```
//!
//! ## Feature flags
//! - `orchestrator`: the global orchestrator that introduces the nodes to each other;
//! - `tracing`: spans for Burn's tracing.

mod global;
pub use global::*;

mod config;
pub use config::*;

mod api;
pub use api::*;

/// The address of a node (sskd: re-exported, it is in `GlobalCollectiveError`'s variants).
pub use burn_communication::Address;

mod local;
