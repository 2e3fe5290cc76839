//! Sizes in bytes that people type (`16G`, `512MiB`, `1.5GiB`) and that LXD is given.
//!
//! Only an allowlisted syntax is accepted: digits, optionally a `.` and more digits, then an
//! optional unit, with no sign, spaces or exponent. `K`, `M`, `G`, `T` mean the binary units
//! (KiB, MiB, …), because that is what people mean when they type `16G` for a memory limit;
//! only the explicit `kB`/`KB`, `MB`, `GB`, `TB` are powers of 1000. A decimal is accepted only
//! when it is a whole number of bytes, so no size is ever rounded behind the user's back.

use std::fmt;

/// What a size looks like, in words, for error messages.
const SIZE_RULE: &str = "write a whole number (or an exact decimal) followed by an optional unit, \
     e.g. 16GiB, 512MiB, 16G or 1.5GiB; no sign, spaces or exponent";

/// The units accepted, in words, for error messages.
const UNIT_RULE: &str = "use B, KiB, MiB, GiB, TiB (or K, M, G, T), or the decimal kB, MB, GB, TB";

/// The most digits accepted after the `.`: enough to write any whole number of bytes in MiB,
/// and small enough that the arithmetic fits in a `u128`.
const MAX_FRACTION_DIGITS: usize = 20;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Binary units from largest to smallest, as displayed.
const BINARY_UNITS: [(u64, &str); 4] = [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")];

/// Why a size was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing was given.
    #[error("size is empty; {SIZE_RULE}")]
    Empty,
    /// Not a number followed by a unit.
    #[error("size {input:?} is not allowed; {SIZE_RULE}")]
    Invalid {
        /// The text given.
        input: String,
    },
    /// A number followed by something that is not a unit.
    #[error("size {input:?} has unknown unit {unit:?}; {UNIT_RULE}")]
    UnknownUnit {
        /// The text given.
        input: String,
        /// The part after the number.
        unit: String,
    },
    /// A decimal that is not a whole number of bytes.
    #[error("size {input:?} is not a whole number of bytes; use a smaller unit or fewer decimals")]
    NotWhole {
        /// The text given.
        input: String,
    },
    /// More than fits in 64 bits.
    #[error("size {input:?} is too large; at most {max} bytes are allowed", max = u64::MAX)]
    TooLarge {
        /// The text given.
        input: String,
    },
    /// Zero where a size above zero is needed.
    #[error("size {input:?} is zero; give a size above zero")]
    Zero {
        /// The text given.
        input: String,
    },
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    /// No bytes.
    pub const ZERO: ByteSize = ByteSize(0);

    /// Exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Parses a size such as `16GiB`, `16G`, `512MiB`, `1.5GiB`, `2GB` or `4096` (bytes).
    /// Zero (`0`, `0GiB`) is accepted; see [`ByteSize::parse_nonzero`] where it is not.
    pub fn parse(input: &str) -> Result<Self, SizeError> {
        if input.is_empty() {
            return Err(SizeError::Empty);
        }
        let invalid = || SizeError::Invalid { input: input.into() };
        let number_len = input.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, unit) = input.split_at(number_len);
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        // Both sides of a `.` need digits: `.5G` and `5.G` are typos more often than not.
        let has_dot = number.contains('.');
        if whole.is_empty() || (has_dot && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let multiplier = unit_multiplier(unit).ok_or_else(|| {
            if unit.chars().all(|c| c.is_ascii_alphabetic()) {
                SizeError::UnknownUnit { input: input.into(), unit: unit.into() }
            } else {
                invalid()
            }
        })?;
        let too_large = || SizeError::TooLarge { input: input.into() };
        // Only ASCII digits remain, so the only way this parse fails is overflow.
        let whole: u128 = whole.parse::<u64>().map_err(|_| too_large())?.into();
        let mut total = whole.checked_mul(multiplier.into()).ok_or_else(too_large)?;
        if !fraction.is_empty() {
            if fraction.len() > MAX_FRACTION_DIGITS {
                return Err(SizeError::NotWhole { input: input.into() });
            }
            let digits: u128 = fraction.parse::<u128>().map_err(|_| invalid())?;
            let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
            // Cannot overflow: digits < 10^20 and multiplier <= 2^40, far below 2^128.
            let scaled = digits * u128::from(multiplier);
            if scaled % scale != 0 {
                return Err(SizeError::NotWhole { input: input.into() });
            }
            total = total.checked_add(scaled / scale).ok_or_else(too_large)?;
        }
        u64::try_from(total).map(Self).map_err(|_| too_large())
    }

    /// Like [`ByteSize::parse`], but refuses zero: for limits, where zero means nothing fits.
    pub fn parse_nonzero(input: &str) -> Result<Self, SizeError> {
        let size = Self::parse(input)?;
        if size.0 == 0 {
            return Err(SizeError::Zero { input: input.into() });
        }
        Ok(size)
    }

    /// The size as LXD 5.0 accepts it for `limits.memory` and a disk device's `size`: whole
    /// binary units where exact (`16GiB`), else bytes with a `B` suffix (`1000000B`). LXD reads
    /// the number as a signed 64-bit integer, so sizes of 8EiB and more (which no machine has)
    /// are not representable there unless they are whole KiB.
    pub fn to_lxd(self) -> String {
        match self.largest_exact_unit() {
            Some((unit, name)) => format!("{}{name}", self.0 / unit),
            None => format!("{}B", self.0),
        }
    }

    /// The largest binary unit that divides the size exactly, if any (zero has none: `0B`).
    fn largest_exact_unit(self) -> Option<(u64, &'static str)> {
        if self.0 == 0 {
            return None;
        }
        BINARY_UNITS.into_iter().find(|(unit, _)| self.0 % unit == 0)
    }
}

/// The number of bytes one `unit` stands for, if `unit` is an accepted unit.
fn unit_multiplier(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "B" => 1,
        "K" | "KiB" => KIB,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        "T" | "TiB" => TIB,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    })
}

/// In the largest binary unit that divides the size exactly (`16GiB`, `1536MiB`); otherwise in
/// MiB with as many decimals as it takes to be exact (`0.95367431640625MiB` is 1000000 bytes),
/// or in bytes below 1MiB (`1000B`). What is displayed always parses back to the same size.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((unit, name)) = self.largest_exact_unit() {
            return write!(f, "{}{name}", self.0 / unit);
        }
        if self.0 < MIB {
            return write!(f, "{}B", self.0);
        }
        // remainder / 2^20 has at most 20 decimals, because 10^20 is a multiple of 2^20: so
        // remainder * 10^20 / 2^20 is exact, and fits in a u128 (below 2^20 * 10^20 < 2^87).
        let whole = self.0 / MIB;
        let remainder = u128::from(self.0 % MIB);
        let decimals = remainder * 10u128.pow(20) / u128::from(MIB);
        let decimals = format!("{decimals:020}");
        write!(f, "{whole}.{}MiB", decimals.trim_end_matches('0'))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepted() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("4096", 4096),
            ("4096B", 4096),
            ("1K", KIB),
            ("1KiB", KIB),
            ("16G", 16 * GIB),
            ("16GiB", 16 * GIB),
            ("512M", 512 * MIB),
            ("512MiB", 512 * MIB),
            ("2T", 2 * TIB),
            ("2TiB", 2 * TIB),
            ("1kB", 1_000),
            ("1KB", 1_000),
            ("3MB", 3_000_000),
            ("2GB", 2_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("1.5GiB", 3 * 512 * MIB),
            ("1.5G", 3 * 512 * MIB),
            ("0.5KiB", 512),
            ("2.50MB", 2_500_000),
            ("007G", 7 * GIB),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551615B", u64::MAX),
            ("16777215T", 16_777_215 * TIB),
            ("0.95367431640625MiB", 1_000_000),
        ];
        for &(input, bytes) in table {
            assert_eq!(ByteSize::parse(input), Ok(ByteSize::from_bytes(bytes)), "{input:?}");
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize::from_bytes(bytes)), "{input:?}");
        }
    }

    #[test]
    fn refused() {
        for bad in [
            "", " ", "16 G", " 16G", "16G ", "-1G", "+1G", "1e9", "1E9", "G", "GiB", ".5G", "5.G", "1.2.3G", "1..2G",
            "16g", "16gib", "16GIB", "16Gi", "16GiBB", "16PiB", "16P", "16kiB", "16mb", "0x10", "1_000", "١٢G",
            "16G\n", "16\u{0}G", "1,5G", "½G",
        ] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let cases: &[(&str, SizeError, &str)] = &[
            ("", SizeError::Empty, "size is empty; write a whole number"),
            ("-1G", SizeError::Invalid { input: "-1G".into() }, "size \"-1G\" is not allowed; write a whole number"),
            (
                "16PiB",
                SizeError::UnknownUnit { input: "16PiB".into(), unit: "PiB".into() },
                "size \"16PiB\" has unknown unit \"PiB\"; use B, KiB",
            ),
            ("1.1B", SizeError::NotWhole { input: "1.1B".into() }, "is not a whole number of bytes"),
            (
                "16777216T",
                SizeError::TooLarge { input: "16777216T".into() },
                "size \"16777216T\" is too large; at most 18446744073709551615 bytes",
            ),
            ("18446744073709551616", SizeError::TooLarge { input: "18446744073709551616".into() }, "is too large"),
        ];
        for (input, error, message) in cases {
            let got = ByteSize::parse(input).unwrap_err();
            assert_eq!(&got, error, "{input:?}");
            assert!(got.to_string().contains(message), "{input:?}: {got}");
        }
    }

    #[test]
    fn zero_is_refused_where_not_allowed() {
        for zero in ["0", "0B", "0GiB", "0.0G"] {
            assert_eq!(ByteSize::parse(zero), Ok(ByteSize::ZERO));
            let err = ByteSize::parse_nonzero(zero).unwrap_err();
            assert_eq!(err, SizeError::Zero { input: zero.into() });
            assert!(err.to_string().contains("is zero"), "{err}");
        }
        assert_eq!(ByteSize::parse_nonzero("1"), Ok(ByteSize::from_bytes(1)));
    }

    #[test]
    fn display_and_lxd() {
        let table: &[(u64, &str, &str)] = &[
            (0, "0B", "0B"),
            (1, "1B", "1B"),
            (1000, "1000B", "1000B"),
            (KIB, "1KiB", "1KiB"),
            (1536 * KIB, "1536KiB", "1536KiB"),
            (1536 * MIB, "1536MiB", "1536MiB"),
            (16 * GIB, "16GiB", "16GiB"),
            (3 * TIB, "3TiB", "3TiB"),
            (1024 * TIB, "1024TiB", "1024TiB"),
            (1_000_000, "1000000B", "1000000B"),
            (MIB + 1, "1.00000095367431640625MiB", "1048577B"),
            (2_000_000_000, "1953125KiB", "1953125KiB"),
            (3 * MIB + 512, "3.00048828125MiB", "3146240B"),
        ];
        for &(bytes, display, lxd) in table {
            let size = ByteSize::from_bytes(bytes);
            assert_eq!(size.bytes(), bytes);
            assert_eq!(size.to_string(), display, "{bytes}");
            assert_eq!(size.to_lxd(), lxd, "{bytes}");
        }
    }

    proptest! {
        /// What is displayed parses back to the same size.
        #[test]
        fn display_round_trips(bytes in any::<u64>()) {
            let size = ByteSize::from_bytes(bytes);
            prop_assert_eq!(ByteSize::parse(&size.to_string()), Ok(size));
        }

        /// Round trips also hold for the sizes people use: whole units and small offsets.
        #[test]
        fn display_round_trips_near_units(n in 0u64..1 << 20, shift in 0u32..44, offset in 0u64..4) {
            let size = ByteSize::from_bytes((n << shift).saturating_add(offset));
            prop_assert_eq!(ByteSize::parse(&size.to_string()), Ok(size));
        }

        /// What LXD is given is a number followed by a unit LXD knows.
        #[test]
        fn lxd_form_is_plain(bytes in any::<u64>()) {
            let lxd = ByteSize::from_bytes(bytes).to_lxd();
            let unit = lxd.trim_start_matches(|c: char| c.is_ascii_digit());
            prop_assert!(["B", "KiB", "MiB", "GiB", "TiB"].contains(&unit), "{}", lxd);
            prop_assert_eq!(ByteSize::parse(&lxd), Ok(ByteSize::from_bytes(bytes)));
        }

        /// Nothing with a character other than digits, `.` and unit letters is ever accepted.
        #[test]
        fn only_the_alphabet_is_accepted(s in "\\PC{0,24}") {
            if ByteSize::parse(&s).is_ok() {
                prop_assert!(s.chars().all(|c| c.is_ascii_digit() || c == '.' || "BKMGTikB".contains(c)), "{:?}", s);
            }
        }

        /// Strings near the accepted shape, with a stray character, are refused.
        #[test]
        fn stray_characters_are_refused(n in 0u64..100_000, stray in "[^0-9.A-Za-z]", unit in "(|B|K|KiB|G|GiB|MB)") {
            let s = format!("{n}{stray}{unit}");
            prop_assert!(ByteSize::parse(&s).is_err(), "{:?}", s);
        }
    }
}
