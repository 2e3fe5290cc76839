//! Names users and admins choose, checked against an allowlist before anything uses them.
//!
//! One rule for every name that becomes part of an LXD object name or alias: lowercase ASCII
//! letters, digits and `-`, starting with a letter, not ending with `-`, at most 63 characters.
//! That fits LXD instance names (which are also hostnames, RFC 1123 labels), image aliases,
//! profile, volume and snapshot names, and Linux user names, so one checked name can be used
//! in all of those places without escaping. Image aliases and recipe names also allow `.`
//! (`debian-12`, `ubuntu-24.04`).

use std::fmt;

/// Why a name was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("{kind} name is empty; {rule}")]
    Empty {
        /// What was being named.
        kind: &'static str,
        /// The rule, in words.
        rule: &'static str,
    },
    /// Too long.
    #[error("{kind} name {name:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// What was being named.
        kind: &'static str,
        /// The name given.
        name: String,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A character or position the rule does not allow.
    #[error("{kind} name {name:?} is not allowed; {rule}")]
    Invalid {
        /// What was being named.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The rule, in words.
        rule: &'static str,
    },
}

/// The longest name: a DNS label, and what fits in LXD's and the kernel's limits.
pub const MAX_NAME_LEN: usize = 63;

const NAME_RULE: &str = "use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'";
const IMAGE_RULE: &str =
    "use 1-63 lowercase letters, digits, '-' and '.', starting with a letter or digit and not ending with '-' or '.'";

fn check(kind: &'static str, name: &str, rule: &'static str, dots: bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind, rule });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind, name: name.into(), len: name.chars().count(), max: MAX_NAME_LEN });
    }
    let bytes = name.as_bytes();
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.');
    let first_ok = bytes[0].is_ascii_lowercase() || (dots && bytes[0].is_ascii_digit());
    let last = bytes[bytes.len() - 1];
    let last_ok = last != b'-' && last != b'.';
    let no_double_dot = !name.contains("..");
    if first_ok && last_ok && no_double_dot && bytes.iter().all(|&b| allowed(b)) {
        Ok(())
    } else {
        Err(NameError::Invalid { kind, name: name.into(), rule })
    }
}

macro_rules! checked_name {
    ($(#[$doc:meta])* $type:ident, $kind:literal, $rule:expr, $dots:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $type(String);

        impl $type {
            /// Checks `name` against the rule.
            pub fn parse(name: &str) -> Result<Self, NameError> {
                check($kind, name, $rule, $dots)?;
                Ok(Self(name.to_owned()))
            }

            /// The checked name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_name!(
    /// A name for a user, container, snapshot, volume or profile: also valid as a hostname
    /// and a Linux user name.
    Name, "object", NAME_RULE, false
);
checked_name!(
    /// An image alias or recipe name, e.g. `debian-12`.
    ImageName, "image", IMAGE_RULE, true
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn object_names() {
        for ok in ["a", "alice", "dev-2", "x1", &"a".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
        for bad in ["", "A", "1abc", "-a", "a-", "a_b", "a.b", "a/b", "a b", "é", "a\n", "..", &"a".repeat(64)] {
            assert!(Name::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn image_names() {
        for ok in ["debian-12", "ubuntu-24.04", "busybox", "0day", "lab-base"] {
            assert!(ImageName::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
        for bad in ["", ".", "..", "a..b", "a.", "-a", "Debian", "a/b", "a b", "x?y"] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let err = Name::parse("Bad_Name").unwrap_err().to_string();
        assert!(err.contains("\"Bad_Name\"") && err.contains("lowercase letters"), "{err}");
        let err = Name::parse(&"a".repeat(70)).unwrap_err().to_string();
        assert!(err.contains("70 characters") && err.contains("at most 63"), "{err}");
    }

    proptest! {
        /// Whatever is accepted is safe to put in a URL path, a hostname, a file name and a
        /// command line without escaping.
        #[test]
        fn accepted_names_are_inert(s in "\\PC{0,80}") {
            if let Ok(name) = Name::parse(&s) {
                prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(name.as_str().len() <= MAX_NAME_LEN);
            }
            if let Ok(name) = ImageName::parse(&s) {
                prop_assert!(!name.as_str().contains("..") && !name.as_str().contains('/'));
                prop_assert!(name.as_str() != "." );
            }
        }

        /// Every string built from the allowed alphabet in the allowed shape is accepted.
        #[test]
        fn well_formed_names_are_accepted(s in "[a-z]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(Name::parse(&s).is_ok());
        }
    }
}
