//! The benchmark harness behind `cargo xtest bench`: workload processes, the engines that
//! checkpoint them (crust, and the reference CRIU with `--vs-criu`), one measured
//! dump/restore round per run, and the report (markdown table and SVG plot).
//!
//! The criterion benches of pure hot paths live in `benches/hot_paths.rs`.
#![deny(unsafe_code)]

pub mod engine;
pub mod floor;
pub mod page_server;
pub mod report;
pub mod scaling;
pub mod sys;
pub mod workload;
