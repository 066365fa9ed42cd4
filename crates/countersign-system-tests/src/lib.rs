//! Tests and benchmarks of the approval service together with its clients (see `tests/` and
//! `benches/`); nothing to link against.
