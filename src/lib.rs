//! sskd
