//! Shared test support. Each integration test crate that needs it declares `mod support;`.
//!
//! Not every test crate uses every helper, so dead-code warnings are silenced for the
//! whole module tree.
#![allow(dead_code)]

pub mod fake_gitlab;
pub mod gitlab_ci_local;
pub mod harness;
pub mod jobs;
pub mod load;
pub mod notes;
pub mod postgres;
pub mod report_world;
pub mod site_world;
