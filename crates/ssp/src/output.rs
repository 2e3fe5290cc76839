//! How results and failures are shown: aligned tables for people, JSON for scripts, progress
//! on stderr, and exit codes that mean something.
//!
//! Exit codes, the same for every command:
//!
//! | code | meaning                                                                  |
//! |------|--------------------------------------------------------------------------|
//! | 0    | success                                                                  |
//! | 1    | any other failure                                                        |
//! | 2    | bad input: a malformed argument, or the daemon refused the request (400/422) |
//! | 3    | a daemon cannot be reached: LXD, or the ssp daemon (or it reports LXD down) |
//! | 4    | not found (404)                                                          |
//! | 5    | permission: not logged in, bad token (401), not allowed (403)             |
//! | 6    | quota exceeded or conflict (409: the name is taken, the state forbids it, LXD is busy with it) |
//!
//! `ssp exec` exits with the command's own exit code once the command ran.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;

use crate::client::ApiError;

/// Exit code for any failure without a more specific code.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad input (unknown names, malformed values): fix the command line.
pub const EXIT_INPUT: u8 = 2;
/// Exit code when the LXD daemon or the ssp daemon cannot be reached: start it (`scripts/up`).
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code when what was named does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;
/// Exit code when not logged in, or not allowed.
pub const EXIT_PERMISSION: u8 = 5;
/// Exit code when a quota would be exceeded or the request conflicts with what exists.
pub const EXIT_CONFLICT: u8 = 6;

/// Bad input found before anything was sent: exits with [`EXIT_INPUT`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Prints `error` with its causes and returns the exit code its kind deserves.
pub fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error}");
    let mut shown = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        // Many messages already end with their cause's text; say each thing once.
        if !shown.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        shown = text;
    }
    ExitCode::from(exit_code(error))
}

fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return api_exit_code(api);
        }
        if let Some(ssp_lxd::Error::Connect { .. }) = cause.downcast_ref::<ssp_lxd::Error>() {
            return EXIT_UNAVAILABLE;
        }
        if cause.downcast_ref::<ssp_core::names::NameError>().is_some()
            || cause.downcast_ref::<ssp_core::size::SizeError>().is_some()
            || cause.downcast_ref::<InputError>().is_some()
        {
            return EXIT_INPUT;
        }
        if let Some(ssp_image::Error::UnknownRecipe { .. }) = cause.downcast_ref::<ssp_image::Error>() {
            return EXIT_INPUT;
        }
    }
    EXIT_FAILURE
}

/// The exit code for a failed API call: the error's code where the daemon gave a known one,
/// else its status.
fn api_exit_code(error: &ApiError) -> u8 {
    match error {
        ApiError::Api { status, code, .. } => match code.as_str() {
            "bad_request" => EXIT_INPUT,
            "unauthorized" | "forbidden" => EXIT_PERMISSION,
            "not_found" => EXIT_NOT_FOUND,
            "conflict" | "quota_exceeded" | "busy" => EXIT_CONFLICT,
            "unavailable" => EXIT_UNAVAILABLE,
            _ => match *status {
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => EXIT_INPUT,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => EXIT_PERMISSION,
                StatusCode::NOT_FOUND => EXIT_NOT_FOUND,
                StatusCode::CONFLICT => EXIT_CONFLICT,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                    EXIT_UNAVAILABLE
                }
                _ => EXIT_FAILURE,
            },
        },
        ApiError::Unreachable { .. } => EXIT_UNAVAILABLE,
        ApiError::NotLoggedIn | ApiError::NoCertificate { .. } => EXIT_PERMISSION,
        ApiError::BadUrl { .. } => EXIT_INPUT,
        ApiError::Tls { .. } | ApiError::Protocol { .. } | ApiError::BadCertificate { .. } | ApiError::Local { .. } => {
            EXIT_FAILURE
        }
    }
}

/// Prints rows as a table with aligned columns under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", format_table(headers, rows));
}

/// Rows as a table with aligned columns under `headers`, two spaces apart, one line each.
pub fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// Prints `name: value` lines with the values aligned: one object, for people.
pub fn fields(fields: &[(&str, String)]) {
    print!("{}", format_fields(fields));
}

/// `name: value` lines with the values aligned.
pub fn format_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(name, _)| name.chars().count() + 1).max().unwrap_or(0);
    fields.iter().map(|(name, value)| format!("{:<width$} {value}\n", format!("{name}:"))).collect()
}

/// A Unix time as UTC, `2025-01-31 14:05:09Z`; `-` for none.
pub fn timestamp(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds else { return "-".into() };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so ssp needs no date library to print a date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are within 1..=31 and 1..=12 by construction.
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

/// Shows what a long operation is doing, on stderr: a spinner on a terminal, a plain line per
/// change otherwise (logs and CI keep the story without control characters).
pub struct Progress {
    bar: Option<ProgressBar>,
    last: String,
    started: Instant,
}

impl Progress {
    /// Starts showing progress.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar, last: String::new(), started: Instant::now() }
    }

    /// Shows `message` as the current step.
    pub fn set(&mut self, message: &str) {
        if message == self.last {
            return;
        }
        self.last = message.to_string();
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("[{:>5.1}s] {message}", self.started.elapsed().as_secs_f64()),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Prints a value as pretty JSON.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Bytes in the largest binary unit that keeps the number at least 1 (`1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = vec![
            vec!["alice/box".to_string(), "Running".to_string(), "10.0.0.2".to_string()],
            vec!["bob/a".to_string(), "Stopped".to_string(), String::new()],
        ];
        let text = format_table(&["NAME", "STATE", "ADDRESS"], &rows);
        assert_eq!(
            text,
            "NAME       STATE    ADDRESS\n\
             alice/box  Running  10.0.0.2\n\
             bob/a      Stopped\n"
        );
        assert_eq!(format_table(&["NAME", "STATE"], &[]), "NAME  STATE\n");
    }

    #[test]
    fn fields_align_values() {
        let text = format_fields(&[("name", "alice".into()), ("role", "admin".into()), ("containers", "1/5".into())]);
        assert_eq!(text, "name:       alice\nrole:       admin\ncontainers: 1/5\n");
    }

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(timestamp(Some(951_782_400)), "2000-02-29 00:00:00Z");
        assert_eq!(timestamp(Some(1_735_689_599)), "2024-12-31 23:59:59Z");
        assert_eq!(timestamp(Some(-1)), "1969-12-31 23:59:59Z");
        assert_eq!(timestamp(None), "-");
    }

    #[test]
    fn api_failures_map_to_exit_codes() {
        let api = |status: u16, code: &str| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            anyhow::Error::new(ApiError::Api { status, code: code.into(), message: "m".into() })
        };
        assert_eq!(exit_code(&api(400, "bad_request")), EXIT_INPUT);
        assert_eq!(exit_code(&api(422, "whatever")), EXIT_INPUT);
        assert_eq!(exit_code(&api(401, "unauthorized")), EXIT_PERMISSION);
        assert_eq!(exit_code(&api(403, "forbidden")), EXIT_PERMISSION);
        assert_eq!(exit_code(&api(404, "not_found")), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&api(409, "conflict")), EXIT_CONFLICT);
        assert_eq!(exit_code(&api(403, "quota_exceeded")), EXIT_CONFLICT, "the code wins over the status");
        assert_eq!(exit_code(&api(503, "unavailable")), EXIT_UNAVAILABLE);
        assert_eq!(exit_code(&api(500, "internal")), EXIT_FAILURE);
        let unreachable = ApiError::Unreachable { url: "https://x:8443".into(), detail: "refused".into() };
        assert_eq!(exit_code(&anyhow::Error::new(unreachable).context("listing containers")), EXIT_UNAVAILABLE);
        assert_eq!(exit_code(&anyhow::Error::new(ApiError::NotLoggedIn)), EXIT_PERMISSION);
        assert_eq!(exit_code(&anyhow::Error::new(InputError("bad".into()))), EXIT_INPUT);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), EXIT_FAILURE);
    }
}
