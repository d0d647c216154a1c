//! banger's shared library: everything the step binaries have in common.
//!
//! - [`record`]: JSON-lines records on stdin/stdout and the `error` forwarding rule.
//! - [`section`]: the typed sections of a VM record (`spec`, `snap`, `net`, `jail`, `vm`).
//! - [`json`]: strict JSON (duplicate keys are errors).
//! - [`step`]: the loop every step runs (stdin or NAME, lock, save, emit, exit code).
//! - [`store`]: the state store (one file per VM, damaged records, locks per VM).
//! - [`atomic`]: atomic writes that sweep killed writers' temp files; removable lock files.
//! - [`config`]: paths and configuration from one place (defaults, config file, environment).
//! - [`proto`] and [`client`]: the root helper's wire protocol and its client.
//! - [`agent`]: reaching a VM's guest agent over its vsock socket; the agent binary for guests.
//! - [`cli`]: flag tables, `--help`, usage errors, error chains and exit codes.
//! - [`complete`]: bash, zsh and fish completions generated from the flag tables.
//! - [`porcelain`] and [`preflight`]: `banger up/down/rm`'s pipelines, their output for people,
//!   and the checks made before anything on the host changes.
//! - [`timing`]: the per-step timing lines of `BANGER_TIMING=1`.
//! - [`wait`]: waiting on a pidfd or an inotify watch instead of sleeping.
//! - [`warm`]: an image's warm artifacts (a booted snapshot) and their checks.

pub mod agent;
pub mod atomic;
pub mod cli;
pub mod client;
pub mod complete;
pub mod config;
pub mod detach;
pub mod digest;
pub mod fc_api;
pub mod find_pid;
pub mod fsx;
pub mod json;
pub mod porcelain;
pub mod preflight;
pub mod progress;
pub mod proto;
pub mod record;
pub mod section;
pub mod step;
pub mod store;
pub mod timing;
pub mod tool;
pub mod wait;
pub mod warm;

/// The version every binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binaries were built from (`unknown` outside a checkout); see build.rs.
pub const COMMIT: &str = env!("BANGER_COMMIT");
