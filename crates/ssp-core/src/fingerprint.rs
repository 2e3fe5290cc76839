//! Certificate fingerprints in the one form both ends use: the daemon shows it (`ssp info`,
//! its log) and the CLI compares it when it pins the certificate.

use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER, as uppercase hex pairs joined by `:` (openssl's form).
pub fn certificate(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_form() {
        let print = super::certificate(b"");
        assert_eq!(print.len(), 32 * 3 - 1);
        assert!(print.starts_with("E3:B0:C4:42"));
    }
}
