//! `ssp login` and `ssp logout`: choose the daemon to talk to, pin its certificate, keep the
//! token — all in the CLI's config file (see `config.rs`).
//!
//! Over https the daemon's certificate is self-signed, so login decides whether to trust it:
//! from a file (`--ca`), by a fingerprint the person got from the server (`--fingerprint`),
//! or on first use, printing the fingerprint to compare. The token is sent only once the
//! certificate is pinned, over a connection that trusts nothing else.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use rustls::pki_types::CertificateDer;

use crate::client::{self, Client, Endpoint};
use crate::config::{self, Config};
use crate::output::{self, InputError};

/// Arguments of `ssp login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The daemon: `https://HOST:8443`, or `unix:/run/ssp/ssp.sock` on its own host.
    pub url: String,
    /// The API token (`ssp token create` makes one); not needed over the socket as root.
    #[arg(long, env = "SSP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's certificate (PEM), to trust instead of fetching it.
    #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
    pub ca: Option<PathBuf>,
    /// The SHA-256 fingerprint the daemon's certificate must have (`ssp info` on the server
    /// prints it); without it, or --ca, the certificate is trusted on first use.
    #[arg(long, value_name = "SHA256HEX", value_parser = fingerprint_arg)]
    pub fingerprint: Option<String>,
}

fn fingerprint_arg(text: &str) -> Result<String, String> {
    if client::is_fingerprint(text) {
        Ok(text.to_string())
    } else {
        Err("a SHA-256 fingerprint is 64 hex digits, optionally in pairs joined by ':'".into())
    }
}

/// What was printed as login's result with `--json`.
#[derive(Debug, serde::Serialize)]
struct LoggedIn<'a> {
    url: &'a str,
    user: &'a str,
    role: ssp_api::Role,
    tls_fingerprint: Option<String>,
    config: String,
}

/// `ssp login`.
pub async fn login(args: LoginArgs, json: bool) -> anyhow::Result<()> {
    let endpoint = Endpoint::parse(&args.url)?;
    let url = endpoint.display();
    let token = args.token.filter(|token| !token.is_empty());
    let certificate = match &endpoint {
        Endpoint::Unix(_) => {
            if args.ca.is_some() || args.fingerprint.is_some() {
                return Err(InputError(
                    "--ca and --fingerprint are for https; a unix socket has no certificate".into(),
                )
                .into());
            }
            None
        }
        Endpoint::Https(https) => {
            if token.is_none() {
                return Err(InputError(format!(
                    "give the API token: ssp login {url} --token TOKEN (an admin makes one with `ssp token create --user NAME`)"
                ))
                .into());
            }
            Some(certificate_for(https, args.ca.as_deref(), args.fingerprint.as_deref()).await?)
        }
    };

    let client = Client::new(endpoint.clone(), token.clone(), certificate.clone())?;
    let info = client.info().await.with_context(|| format!("logging in to {url}"))?;
    let shown_fingerprint = match &certificate {
        Some(certificate) => Some(check_reported_fingerprint(certificate, &info.tls_fingerprint)?),
        None => None,
    };
    if let (Some(fingerprint), None, None) = (&shown_fingerprint, &args.ca, &args.fingerprint) {
        eprintln!("trusting certificate SHA256 {fingerprint} on first use; compare with `ssp info` on the server");
    }

    let path = config::path()?;
    let config = Config { url: Some(url.clone()), token, ca_cert: certificate.map(|c| client::to_pem(&c)) };
    config.write(&path)?;
    if json {
        return output::json(&LoggedIn {
            url: &url,
            user: &info.user,
            role: info.role,
            tls_fingerprint: shown_fingerprint,
            config: path.display().to_string(),
        });
    }
    println!("logged in to {url} as {} ({}); settings saved in {}", info.user, role_name(info.role), path.display());
    Ok(())
}

/// The certificate to pin: from `--ca`, or fetched and checked against `--fingerprint`, or
/// fetched and trusted on first use.
async fn certificate_for(
    url: &reqwest::Url,
    ca: Option<&std::path::Path>,
    expected: Option<&str>,
) -> anyhow::Result<CertificateDer<'static>> {
    if let Some(path) = ca {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the certificate {}", path.display()))?;
        return client::parse_pem(&pem)
            .map_err(|e| InputError(format!("{} holds no PEM certificate: {e}", path.display())).into());
    }
    let certificate = client::fetch_certificate(url).await?;
    if let Some(expected) = expected {
        let presented = ssp_core::fingerprint::certificate(&certificate);
        if client::normalize_fingerprint(&presented) != client::normalize_fingerprint(expected) {
            bail!(
                "refusing to log in: the server at {} presented certificate SHA256 {presented}, not the expected {expected}; \
                 check the fingerprint with `ssp info` on the server — someone may be intercepting the connection",
                url.as_str().trim_end_matches('/')
            );
        }
    }
    Ok(certificate)
}

/// Checks that the certificate this connection saw is the one the daemon says it serves, and
/// returns the fingerprint in the daemon's spelling (what `ssp info` on the server shows).
/// A mismatch means something between us and the daemon terminates TLS.
fn check_reported_fingerprint(certificate: &CertificateDer<'_>, reported: &str) -> anyhow::Result<String> {
    let seen = ssp_core::fingerprint::certificate(certificate);
    if reported.is_empty() {
        return Ok(seen);
    }
    if client::normalize_fingerprint(reported) != client::normalize_fingerprint(&seen) {
        bail!(
            "refusing to log in: this connection presented certificate SHA256 {seen}, but the daemon reports \
             SHA256 {reported}; something between you and the daemon is intercepting TLS"
        );
    }
    Ok(reported.to_string())
}

/// A role as people read it.
pub fn role_name(role: ssp_api::Role) -> &'static str {
    match role {
        ssp_api::Role::Admin => "admin",
        ssp_api::Role::User => "user",
    }
}

/// `ssp logout`: forgets the token, keeping the URL and certificate for the next login.
pub fn logout() -> anyhow::Result<()> {
    let path = config::path()?;
    let mut config = Config::read(&path)?;
    match (config.token.take(), &config.url) {
        (Some(_), url) => {
            config.write(&path)?;
            println!(
                "logged out of {}; the token is removed from {}",
                url.as_deref().unwrap_or("the ssp daemon"),
                path.display()
            );
        }
        (None, _) => println!("not logged in; nothing to do"),
    }
    if std::env::var_os(config::TOKEN_ENV).is_some_and(|token| !token.is_empty()) {
        eprintln!("note: SSP_TOKEN is set in the environment and still logs you in; unset it too");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_on_the_command_line_are_checked() {
        let hex = "ab".repeat(32);
        assert!(fingerprint_arg(&hex).is_ok());
        assert!(fingerprint_arg(&format!("SHA256:{}", vec!["AB"; 32].join(":"))).is_ok());
        assert!(fingerprint_arg("abcd").is_err());
        assert!(fingerprint_arg(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn the_reported_fingerprint_must_match_the_seen_one() -> anyhow::Result<()> {
        let certificate = CertificateDer::from(b"certificate bytes".to_vec());
        let seen = ssp_core::fingerprint::certificate(&certificate);
        assert_eq!(check_reported_fingerprint(&certificate, "")?, seen);
        let lower = seen.to_lowercase();
        assert_eq!(check_reported_fingerprint(&certificate, &lower)?, lower, "the daemon's spelling is kept");
        assert!(check_reported_fingerprint(&certificate, &"00".repeat(32)).is_err());
        Ok(())
    }
}
