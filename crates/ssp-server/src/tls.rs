//! The API's TLS identity: the configured certificate, or a self-signed one made on first
//! start and kept in the state folder, so clients can pin it (`ssp login` stores it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a PEM file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Making the self-signed certificate failed.
    #[error("making a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A loaded identity.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The server configuration for the listener.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, hex pairs joined by `:`.
    pub fingerprint: String,
    /// The certificate file (what `ssp login --ca` reads).
    pub cert_path: PathBuf,
}

/// The names a self-signed certificate covers: loopback, the host's name, and `extra`.
fn subject_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.extend(extra.iter().cloned());
    names.dedup();
    names
}

fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io { path: path.into(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Written beside and renamed, so a crash never leaves half a key that blocks the next start.
    let temporary = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Loads `cert`/`key` when both are given, else the self-signed pair under `state_dir/tls`,
/// making it first if needed.
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    state_dir: &Path,
    extra_names: &[String],
) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        _ => {
            let dir = state_dir.join("tls");
            let cert_path = dir.join("cert.pem");
            let key_path = dir.join("key.pem");
            if !cert_path.exists() || !key_path.exists() {
                let made = rcgen::generate_simple_self_signed(subject_names(extra_names))?;
                write_private(&key_path, &made.signing_key.serialize_pem(), 0o600)?;
                write_private(&cert_path, &made.cert.pem(), 0o644)?;
            }
            (cert_path, key_path)
        }
    };
    let pem_error = |path: &Path, message: String| TlsError::Pem { path: path.into(), message };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem_error(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&cert_path, e.to_string()))?;
    let leaf = chain.first().ok_or_else(|| pem_error(&cert_path, "no certificate in the file".into()))?;
    let fingerprint = ssp_core::fingerprint::certificate(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_error(&key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsIdentity { config: Arc::new(config), fingerprint, cert_path })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, None, dir.path(), &["ssp.example".into()]).unwrap();
        let second = load_or_create(None, None, dir.path(), &[]).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_certificate_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = load_or_create(Some(&cert), Some(&key), dir.path(), &[]).unwrap_err();
        assert!(error.to_string().contains("c.pem"), "{error}");
    }
}
