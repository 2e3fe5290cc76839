//! Durations as people type them for leases and schedules: `90s`, `30m`, `8h`, `2d`, `1h30m`.

use std::time::Duration;

/// The longest duration accepted: a year.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `text` (one or more `<number><unit>` with units `s`, `m`, `h`, `d`), at least one
/// second and at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let help = "give a duration like 90s, 30m, 8h, 2d or 1h30m";
    if text.is_empty() || text.len() > 32 {
        return Err(format!("duration {text:?} is not valid; {help}"));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("duration {text:?} is not valid; {help}")),
        };
        let n: u64 = number.parse().map_err(|_| format!("duration {text:?} is not valid; {help}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("duration {text:?} lacks a unit; {help}"));
    }
    let duration = Duration::from_secs(total);
    if duration.is_zero() || duration > MAX {
        return Err(format!("duration {text:?} must be between 1s and 366d"));
    }
    Ok(duration)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_typed() {
        assert_eq!(parse("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse("3s").unwrap(), Duration::from_secs(3));
        for bad in ["", "8", "h", "0s", "-1h", "1w", "400d", "1 h", "8H", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
