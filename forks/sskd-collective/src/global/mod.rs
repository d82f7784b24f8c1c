pub(crate) mod node;
pub(crate) mod shared;
// sskd: public, so that a caller can tell a lost or stalled peer from other errors.
pub use shared::GlobalCollectiveError;

#[cfg(feature = "orchestrator")]
pub mod orchestrator;
#[cfg(feature = "orchestrator")]
pub use orchestrator::*;

mod base;
pub use base::*;
