//! How results and failures are shown: aligned tables for people, JSON for scripts, and exit
//! codes that mean something.

use std::process::ExitCode;

/// Exit code for bad input (unknown names, malformed values): fix the command line.
pub const EXIT_INPUT: u8 = 2;
/// Exit code when the LXD daemon cannot be reached: start it (`scripts/up`).
pub const EXIT_UNAVAILABLE: u8 = 3;

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
        if let Some(ssp_lxd::Error::Connect { .. }) = cause.downcast_ref::<ssp_lxd::Error>() {
            return EXIT_UNAVAILABLE;
        }
        if cause.downcast_ref::<ssp_core::names::NameError>().is_some() {
            return EXIT_INPUT;
        }
        if let Some(ssp_image::Error::UnknownRecipe { .. }) = cause.downcast_ref::<ssp_image::Error>() {
            return EXIT_INPUT;
        }
    }
    1
}

/// Prints rows as a table with aligned columns under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
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
    use super::human_bytes;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
