//! `ssp`: the one binary of the Super Server Platform.
//!
//! Thin by design: it parses arguments, calls the library crates, and turns their results
//! into tables, JSON and exit codes. Each command lives in its own file under `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;

/// Share GPU servers: isolated system containers for every user, on the real LXD.
#[derive(Debug, Parser)]
#[command(name = "ssp", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, import and list container images.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return output::fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Image(command) => cmd::image::run(command, cli.json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::fail(&e),
    }
}
