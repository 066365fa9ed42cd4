//! One module per group of subcommands.

pub mod admin;
pub mod agent;
pub mod approver;
pub mod demo;
mod scenarios;
pub mod serve;
