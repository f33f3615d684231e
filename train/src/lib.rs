//! The GFM trainer as a library (the `hydragnn` binary is its command line).
#![warn(missing_docs)]

pub mod data;
