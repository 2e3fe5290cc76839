//! `ssp info`: who the daemon takes you for, and what it is (version, backend, and the
//! certificate fingerprint people compare at `ssp login`, the SSH gateway's host key).

use anyhow::Context;

use crate::cmd::login::role_name;
use crate::output;

/// `ssp info`.
pub async fn run(json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    let info = client.info().await.context("asking the ssp daemon about itself")?;
    if json {
        return output::json(&info);
    }
    let (gateway, gateway_key) = match &info.gateway {
        Some(gateway) => (gateway.listen.clone(), gateway.host_key_fingerprint.clone()),
        None => ("off".into(), "-".into()),
    };
    output::fields(&[
        ("url", client.url()),
        ("user", info.user),
        ("role", role_name(info.role).to_string()),
        ("server version", info.version),
        ("client version", env!("CARGO_PKG_VERSION").to_string()),
        ("backend", info.backend),
        (
            "tls fingerprint",
            if info.tls_fingerprint.is_empty() { "-".into() } else { format!("SHA256 {}", info.tls_fingerprint) },
        ),
        ("ssh gateway", gateway),
        ("ssh host key", gateway_key),
    ]);
    Ok(())
}
