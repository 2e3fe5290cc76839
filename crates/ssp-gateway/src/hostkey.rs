//! The gateway's host key: ed25519, made once and kept (mode 0600), so clients that pinned
//! it keep trusting the gateway across restarts.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};

use crate::Error;

/// The gateway's host key.
#[derive(Clone)]
pub struct HostKey {
    key: PrivateKey,
    path: PathBuf,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("path", &self.path).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl HostKey {
    /// Reads the key at `path`, or makes one there (and its folder, mode 0700).
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        let fail = |message: String| Error::HostKey { path: path.into(), message };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = PrivateKey::from_openssh(text.trim()).map_err(|e| fail(format!("unreadable: {e}")))?;
                let mode = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(fail(format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777)));
                }
                return Ok(Self { key, path: path.into() });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("creating its folder: {e}")))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(format!("setting its folder's mode: {e}")))?;
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| fail(format!("drawing a key: {e}")))?;
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        let text = key.to_openssh(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
        // Written to a new file and renamed, so a crash never leaves half a key.
        let temporary = path.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| fail(e.to_string()))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| fail(e.to_string()))?;
        tracing::info!("made the gateway host key {} ({})", path.display(), Self::fingerprint_of(&key));
        Ok(Self { key, path: path.into() })
    }

    /// `SHA256:…`, as `ssh-keygen -l` and OpenSSH's prompts show it.
    pub fn fingerprint(&self) -> String {
        Self::fingerprint_of(&self.key)
    }

    fn fingerprint_of(key: &PrivateKey) -> String {
        key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The public key as an OpenSSH line (`ssh-ed25519 AAAA…`), for `known_hosts`.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    pub(crate) fn private(&self) -> &PrivateKey {
        &self.key
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw/ssh_host_ed25519_key");
        let first = HostKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = HostKey::load_or_create(&path).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(first.fingerprint().starts_with("SHA256:"));
        assert!(first.public_line().starts_with("ssh-ed25519 AAAA"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(HostKey::load_or_create(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
