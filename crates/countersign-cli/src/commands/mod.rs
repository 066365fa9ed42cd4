//! One module per group of subcommands.

pub mod admin;
pub mod agent;
pub mod approver;
pub mod audit;
pub mod database;
pub mod demo;
pub mod exec;
pub mod gate;
pub mod keys;
pub mod migrate;
mod scenarios;
pub mod serve;
