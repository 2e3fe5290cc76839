//! `ssp serve`: runs the daemon (API, reconciler) until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `ssp serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); defaults apply where it is silent or missing.
    #[arg(long, env = "SSP_CONFIG_FILE", default_value = "/etc/ssp/ssp.toml")]
    pub config: PathBuf,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = ssp_server::Settings::load(&args.config)?;
    ssp_server::serve(settings).await.context("ssp serve")
}
