//! Operator commands: `cocreate queue …` (status, list, show, replay, purge).
//!
//! The logic and the output (text tables and `--json`) live here; `main.rs` only parses the
//! command line and calls [`queue_cmd::run`].

pub mod log_scrub;
pub mod queue_cmd;
mod render;

pub use queue_cmd::{OpsError, QueueArgs, QueueCommand, QueueUrlArg};
