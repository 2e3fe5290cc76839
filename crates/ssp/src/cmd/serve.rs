//! `ssp serve`: runs the daemon (API, reconciler) until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `ssp serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); defaults apply where it is silent or missing.
    #[arg(long, env = "SSP_CONFIG_FILE", default_value = "/etc/ssp/ssp.toml")]
    pub config: PathBuf,
    /// Replace the state database with this backup (`ssp admin backup`) before starting.
    /// Containers it records that LXD no longer has become `lost`; instances made after
    /// the backup are kept, not removed (see ARCHITECTURE.md).
    #[arg(long, value_name = "FILE")]
    pub restore_state: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut settings = ssp_server::Settings::load(&args.config)?;
    // `SSP_GPU_EMULATE=4 scripts/up` switches a platform to emulated GPUs without editing
    // its configuration.
    if let Ok(text) = std::env::var("SSP_GPU_EMULATE") {
        let count: u32 = text.trim().parse().with_context(|| format!("SSP_GPU_EMULATE={text:?} is not a count"))?;
        let mut raw = settings.raw.clone();
        raw.gpu.emulate = count;
        settings = ssp_server::Settings::check(raw, &args.config)?;
    }
    if let Some(backup) = &args.restore_state {
        let version = ssp_server::restore_state(&settings, backup)
            .with_context(|| format!("restoring ssp's state from {}", backup.display()))?;
        tracing::info!("state restored from {} (schema version {version})", backup.display());
    }
    ssp_server::serve(settings).await.context("ssp serve")
}
