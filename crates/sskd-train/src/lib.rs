//! `sskd-train`: part of the sskd workspace (filled by its own issue).
#![warn(missing_docs)]
