//! `policies check`: prints the policies' errors with positions, or a summary.

use std::process::ExitCode;

use crate::app::{self, ConfigSource};

pub(super) fn check(policies: &ConfigSource) -> ExitCode {
    match app::check_policies(policies) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(text) => {
            print!("{text}");
            ExitCode::FAILURE
        }
    }
}
