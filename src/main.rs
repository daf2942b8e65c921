//! The `cocreate` command line. Parses settings, then calls one command; all logic, output
//! formatting included, is in the library (`cocreate::cli`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    cocreate::cli::main(cocreate::cli::Cli::parse()).await
}
