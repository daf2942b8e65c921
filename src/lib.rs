//! `cocreate`: runs the Co-Create program inside GitLab.
//!
//! Architecture (read top to bottom, the way an event flows):
//! - [`server`] receives webhooks, [`webhook`] verifies them, [`queue`] stores them durably;
//! - [`worker`] claims stored events and hands each to a handler in [`handlers`];
//! - a handler parses its input ([`events`]), gathers facts through [`gitlab`], asks the pure
//!   rules in [`decide`] (driven by [`policy`] and the [`messages`] templates) what to do, and
//!   gives the resulting actions to the one [`gitlab::Executor`] that writes to GitLab.

pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod decide;
pub mod domain;
pub mod events;
pub mod gitlab;
pub mod handlers;
pub mod jobs;
pub mod messages;
pub mod metrics;
pub mod neutralize;
pub mod ops;
pub mod policy;
pub mod queue;
pub mod redact;
pub mod reload;
pub mod server;
pub mod webhook;
pub mod worker;
