//! The few parts of RFB, the VNC protocol (RFC 6143), that ssp speaks itself when it relays a
//! desktop: the version exchange and the security handshake, on both sides.
//!
//! A desktop's VNC server (TigerVNC's `Xtigervnc` inside the container) demands a per-session
//! secret (VNC authentication: DES over a random challenge). ssp answers that challenge
//! itself and then offers the viewer — the portal's noVNC over a ticketed websocket, or a
//! native viewer through the SSH gateway — the security type *None*: the viewer has already
//! proved who it is to ssp, and the secret never leaves the daemon. After the handshake the
//! bytes are relayed as they are.
//!
//! Everything here is pure: the IO around it is `ssp_gateway::rfb`.

use des::cipher::{BlockCipherEncrypt, KeyInit};

/// The version ssp announces to viewers (and answers servers with).
pub const VERSION_3_8: &[u8; 12] = b"RFB 003.008\n";

/// Security type *None*.
pub const SECURITY_NONE: u8 = 1;

/// Security type *VNC authentication*.
pub const SECURITY_VNC_AUTH: u8 = 2;

/// The length of a desktop session's secret (VNC authentication uses at most 8 bytes).
pub const SECRET_LEN: usize = 8;

/// A protocol version, as far as the handshake differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.3: the server picks the security type; no result for *None*.
    V3_3,
    /// 3.7: the client picks from a list; no result for *None*.
    V3_7,
    /// 3.8: the client picks from a list; a result always follows.
    V3_8,
}

/// Why a handshake cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RfbError {
    /// The peer does not speak RFB 3.x.
    #[error("not an RFB 3.x peer (it said {0:?})")]
    NotRfb(String),
    /// The server offers no VNC authentication (it would let anyone in, or wants something
    /// ssp does not speak).
    #[error("the desktop's VNC server does not ask for its secret (it offers {0:?}); refusing to relay it")]
    NoVncAuth(Vec<u8>),
    /// The secret is not one a session is given.
    #[error("a desktop secret is {SECRET_LEN} letters and digits")]
    BadSecret,
    /// The client asked for a security type that was not offered.
    #[error("the viewer chose security type {0}, but only None (1) was offered")]
    UnofferedType(u8),
}

/// Reads a peer's 12-byte version line. RFC 6143 §7.1.1: anything from 3.3 to 3.6 is treated
/// as 3.3 (some viewers announce 3.5 or 3.6), 3.8 and later 3.x as 3.8.
pub fn parse_version(line: &[u8; 12]) -> Result<Version, RfbError> {
    let shown = || RfbError::NotRfb(String::from_utf8_lossy(line).into_owned());
    let text = std::str::from_utf8(line).map_err(|_| shown())?;
    let rest = text.strip_prefix("RFB ").and_then(|rest| rest.strip_suffix('\n')).ok_or_else(shown)?;
    let (major, minor) = rest.split_once('.').ok_or_else(shown)?;
    let digits = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(shown());
    }
    let minor: u16 = minor.parse().map_err(|_| shown())?;
    match (major, minor) {
        ("003", 0..=2) => Err(shown()),
        ("003", 3..=6) => Ok(Version::V3_3),
        ("003", 7) => Ok(Version::V3_7),
        ("003", _) => Ok(Version::V3_8),
        _ => Err(shown()),
    }
}

/// A session's secret as the in-container script prints it: exactly [`SECRET_LEN`] ASCII
/// letters and digits.
pub fn parse_secret(text: &str) -> Result<String, RfbError> {
    let secret = text.strip_suffix('\n').unwrap_or(text);
    if secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(secret.to_string())
    } else {
        Err(RfbError::BadSecret)
    }
}

/// Which security type ssp takes from the server's list: VNC authentication, and nothing
/// else — a desktop server that offers *None* is not one ssp set up.
pub fn pick_server_security(offered: &[u8]) -> Result<u8, RfbError> {
    if offered.contains(&SECURITY_VNC_AUTH) {
        Ok(SECURITY_VNC_AUTH)
    } else {
        Err(RfbError::NoVncAuth(offered.to_vec()))
    }
}

/// The answer to a VNC-authentication challenge: the challenge DES-encrypted (two blocks,
/// ECB) with the secret as key, each key byte's bits mirrored as VNC has always done.
pub fn vnc_auth_response(challenge: &[u8; 16], secret: &str) -> Result<[u8; 16], RfbError> {
    let secret = parse_secret(secret)?;
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(secret.bytes()) {
        *slot = byte.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).map_err(|_| RfbError::BadSecret)?;
    let mut response = *challenge;
    for half in response.chunks_exact_mut(8) {
        let mut block = des::cipher::Block::<des::Des>::default();
        block.copy_from_slice(half);
        cipher.encrypt_block(&mut block);
        half.copy_from_slice(&block);
    }
    Ok(response)
}

/// What ssp sends a viewer that answered with `version`, right after it: the security types
/// on offer — only *None*.
pub fn viewer_security_offer(version: Version) -> Vec<u8> {
    match version {
        // 3.3: the server decides, as a 32-bit type.
        Version::V3_3 => u32::from(SECURITY_NONE).to_be_bytes().to_vec(),
        // 3.7 and 3.8: a count, then the types.
        Version::V3_7 | Version::V3_8 => vec![1, SECURITY_NONE],
    }
}

/// Whether the viewer sends its choice of security type (3.7 and 3.8 do, 3.3 does not).
pub fn viewer_chooses(version: Version) -> bool {
    version != Version::V3_3
}

/// Checks the viewer's choice of security type.
pub fn check_viewer_choice(choice: u8) -> Result<(), RfbError> {
    if choice == SECURITY_NONE {
        Ok(())
    } else {
        Err(RfbError::UnofferedType(choice))
    }
}

/// What ssp sends after the viewer's choice: 3.8 has a SecurityResult (0: OK) even for
/// *None*; older versions go straight to ClientInit.
pub fn viewer_security_result(version: Version) -> &'static [u8] {
    match version {
        Version::V3_8 => &[0, 0, 0, 0],
        Version::V3_3 | Version::V3_7 => &[],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_as_rfc_6143_says() {
        let line = |s: &str| -> [u8; 12] { s.as_bytes().try_into().unwrap() };
        for (text, version) in [
            ("RFB 003.003\n", Version::V3_3),
            ("RFB 003.005\n", Version::V3_3),
            ("RFB 003.006\n", Version::V3_3),
            ("RFB 003.007\n", Version::V3_7),
            ("RFB 003.008\n", Version::V3_8),
            ("RFB 003.889\n", Version::V3_8),
        ] {
            assert_eq!(parse_version(&line(text)), Ok(version), "{text:?}");
        }
        for bad in ["RFB 004.000\n", "RFB 003.002\n", "RFB 03.0008\n", "SSH-2.0-xxx\n", "RFB 003.008 ", "RFB 0x3.008\n"]
        {
            assert!(matches!(parse_version(&line(bad)), Err(RfbError::NotRfb(_))), "{bad:?}");
        }
        assert!(parse_version(&[0xff; 12]).is_err());
    }

    #[test]
    fn secrets_are_eight_letters_or_digits() {
        assert_eq!(parse_secret("aB3dE5gH\n").unwrap(), "aB3dE5gH");
        assert_eq!(parse_secret("12345678").unwrap(), "12345678");
        for bad in ["", "short", "toolong12", "abc-efgh", "abcdefg\u{e9}", "abcd efg", "abcdefgh\n\n"] {
            assert_eq!(parse_secret(bad), Err(RfbError::BadSecret), "{bad:?}");
        }
    }

    #[test]
    fn only_vnc_authentication_is_taken_from_a_server() {
        assert_eq!(pick_server_security(&[2]), Ok(2));
        assert_eq!(pick_server_security(&[19, 2, 1]), Ok(2));
        for offered in [&[][..], &[1], &[16, 19], &[1, 19]] {
            assert_eq!(pick_server_security(offered), Err(RfbError::NoVncAuth(offered.to_vec())));
        }
    }

    #[test]
    fn the_challenge_is_answered_as_vnc_servers_expect() {
        // Computed independently with OpenSSL (`openssl enc -des-ecb -nopad -provider legacy`)
        // from the bit-mirrored key of "password" (0e 86 ce ce ee f6 4e 26).
        let challenge: [u8; 16] = *b"0123456789abcdef";
        let expected = "5645abeb5f1e6475e8feb11beb66ea19";
        let response = vnc_auth_response(&challenge, "password").unwrap();
        let hex: String = response.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        // Another secret, another answer; a malformed one is refused before DES.
        assert_ne!(vnc_auth_response(&challenge, "passwore").unwrap(), response);
        assert_eq!(vnc_auth_response(&challenge, "pass"), Err(RfbError::BadSecret));
    }

    #[test]
    fn viewers_are_offered_none_in_their_version_s_words() {
        assert_eq!(viewer_security_offer(Version::V3_3), [0, 0, 0, 1]);
        assert_eq!(viewer_security_offer(Version::V3_7), [1, 1]);
        assert_eq!(viewer_security_offer(Version::V3_8), [1, 1]);
        assert!(!viewer_chooses(Version::V3_3));
        assert!(viewer_chooses(Version::V3_7) && viewer_chooses(Version::V3_8));
        assert_eq!(viewer_security_result(Version::V3_8), [0, 0, 0, 0]);
        assert!(viewer_security_result(Version::V3_7).is_empty());
        assert_eq!(check_viewer_choice(1), Ok(()));
        assert_eq!(check_viewer_choice(2), Err(RfbError::UnofferedType(2)));
    }
}
