//! The Countersign approval service as a library.
pub mod policy;
