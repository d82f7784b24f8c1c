//! `sskd-losses`: part of the sskd workspace (filled by its own issue).
#![warn(missing_docs)]
