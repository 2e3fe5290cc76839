//! OpenSSH public keys as users paste them (`ssh-ed25519 AAAA… comment`), checked before
//! they are stored or written into a container's `authorized_keys`.
//!
//! Only the key types OpenSSH still accepts by default are allowed; the base64 body must
//! decode and name the same type as the line, so a line cannot smuggle options
//! (`command="…"`), newlines or a second key into `authorized_keys`. The comment is kept only
//! if it is plain printable text.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The key types accepted.
pub const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
    "rsa-sha2-512",
];

/// Why a key line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `TYPE BASE64 [COMMENT]` on one line.
    #[error("not an OpenSSH public key line; expected `TYPE BASE64 [COMMENT]` as in a .pub file")]
    Malformed,
    /// A type OpenSSH no longer accepts, or not a key type at all.
    #[error("key type {0:?} is not accepted; use one of: ssh-ed25519, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, ssh-rsa (3072 bits or more)")]
    UnsupportedType(String),
    /// The body is not base64 or names another type.
    #[error("the key's base64 body is damaged or does not match its type {0:?}")]
    BadBody(String),
    /// An RSA key that is too short.
    #[error("RSA key has {0} bits; at least 3072 are required")]
    WeakRsa(usize),
}

/// A checked public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: String,
    blob: Vec<u8>,
    comment: Option<String>,
}

fn read_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    Some((body, &data[4 + len..]))
}

impl PublicKey {
    /// Parses one line of a `.pub` file.
    pub fn parse(line: &str) -> Result<Self, KeyError> {
        let line = line.trim();
        if line.contains(['\n', '\r', '\0']) {
            return Err(KeyError::Malformed);
        }
        let mut parts = line.splitn(3, [' ', '\t']);
        let kind = parts.next().filter(|k| !k.is_empty()).ok_or(KeyError::Malformed)?;
        let body = parts.next().map(str::trim).filter(|b| !b.is_empty()).ok_or(KeyError::Malformed)?;
        if !KEY_TYPES.contains(&kind) {
            return Err(KeyError::UnsupportedType(kind.chars().take(40).collect()));
        }
        let blob = STANDARD.decode(body).map_err(|_| KeyError::BadBody(kind.into()))?;
        let (inner, rest) = read_string(&blob).ok_or_else(|| KeyError::BadBody(kind.into()))?;
        let inner_kind = if kind == "rsa-sha2-512" { "ssh-rsa" } else { kind };
        if inner != inner_kind.as_bytes() || rest.is_empty() {
            return Err(KeyError::BadBody(kind.into()));
        }
        if inner_kind == "ssh-rsa" {
            let (_exponent, rest) = read_string(rest).ok_or_else(|| KeyError::BadBody(kind.into()))?;
            let (modulus, _) = read_string(rest).ok_or_else(|| KeyError::BadBody(kind.into()))?;
            let significant = modulus.iter().skip_while(|&&b| b == 0).count();
            let bits = significant * 8;
            if bits < 3072 {
                return Err(KeyError::WeakRsa(bits));
            }
        }
        let comment = parts
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_graphic() || ch == ' '))
            .map(|c| c.chars().take(100).collect());
        Ok(Self { kind: inner_kind.into(), blob, comment })
    }

    /// `ssh-ed25519`, …
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The comment, if it was plain text.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&self.blob)))
    }

    /// The canonical line without comment, safe to write into `authorized_keys`.
    pub fn to_line(&self) -> String {
        format!("{} {}", self.kind, STANDARD.encode(&self.blob))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A real ed25519 public key (from `ssh-keygen -t ed25519`); its fingerprint from `ssh-keygen -l`.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrKf1o0RwkJwqVjSVr1Kk8ACQpKfuTsWg+LO78esydY alice@laptop";
    const ED25519_FP: &str = "SHA256:3WKEpLzhp7KekW2TRuU61tnQ5MNMg5WkvbUgfliNbYU";

    #[test]
    fn parses_and_fingerprints_like_ssh_keygen() {
        let key = PublicKey::parse(ED25519).unwrap();
        assert_eq!(key.kind(), "ssh-ed25519");
        assert_eq!(key.comment(), Some("alice@laptop"));
        assert_eq!(key.fingerprint(), ED25519_FP);
        assert_eq!(format!("{} alice@laptop", key.to_line()), ED25519);
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "command=\"rm -rf /\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrKf1o0RwkJwqVjSVr1Kk8ACQpKfuTsWg+LO78esydY",
            "ssh-ed25519 !!!notbase64",
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrKf1o0RwkJwqVjSVr1Kk8ACQpKfuTsWg+LO78esydY\nssh-ed25519 AAAA",
        ] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn odd_comments_are_dropped_not_written() {
        let key = PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrKf1o0RwkJwqVjSVr1Kk8ACQpKfuTsWg+LO78esydY bad\u{7}bell",
        )
        .unwrap();
        assert_eq!(key.comment(), None);
    }

    #[test]
    fn short_rsa_is_refused() {
        // ssh-rsa blob with e=65537 and a 1024-bit modulus.
        let mut blob = Vec::new();
        for part in [b"ssh-rsa".to_vec(), vec![1, 0, 1], [vec![0], vec![0xc5; 128]].concat()] {
            blob.extend((part.len() as u32).to_be_bytes());
            blob.extend(part);
        }
        let line = format!("ssh-rsa {}", STANDARD.encode(&blob));
        assert_eq!(PublicKey::parse(&line), Err(KeyError::WeakRsa(1024)));
    }
}
