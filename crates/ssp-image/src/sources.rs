//! Finding the host's Debian mirror in its apt sources, so that builds use whatever mirror
//! (or caching proxy) the host is set up for. Reads both formats: one-line `sources.list`
//! entries and deb822 `*.sources` stanzas. Parsing is pure; only [`host_sources`] reads files.

use std::path::{Path, PathBuf};

/// Debian's own redirector, used when the host names no mirror.
pub(crate) const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Debian's security archive, used when the host names none.
pub(crate) const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// The host's apt source files as (path, text), in the order apt reads them:
/// `/etc/apt/sources.list`, then `/etc/apt/sources.list.d/*.list` and `*.sources` by name.
/// Other files there (`*.disabled`, backups) are ignored, as apt ignores them.
pub(crate) fn host_sources() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("list" | "sources")))
            .collect();
        more.sort();
        paths.extend(more);
    }
    paths.into_iter().filter_map(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text))).collect()
}

/// The first mirror in one source file that serves `suite` (`bookworm`,
/// `bookworm-security`) with its `main` component over http(s). For the main suite the URI
/// must also look like a Debian archive (its path ends in `/debian`), so that a third-party
/// repository that happens to use the suite's name is not taken for a mirror. `path`'s
/// extension tells the format (`.sources`: deb822).
pub(crate) fn mirror_for(path: &Path, text: &str, suite: &str) -> Option<String> {
    let entries = if path.extension().is_some_and(|e| e == "sources") { deb822(text) } else { one_line(text) };
    let security = suite.ends_with("-security");
    entries
        .into_iter()
        .filter(|e| e.suites.iter().any(|s| s == suite) && e.components.iter().any(|c| c == "main"))
        .flat_map(|e| e.uris)
        .map(|uri| uri.trim_end_matches('/').to_string())
        .find(|uri| {
            (uri.starts_with("http://") || uri.starts_with("https://")) && (security || uri.ends_with("/debian"))
        })
}

/// One `deb` source: where, which suites, which components.
#[derive(Debug, Default, PartialEq, Eq)]
struct Entry {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
}

/// `deb [options] URI SUITE COMPONENT...` lines; `deb-src` and comments are skipped.
fn one_line(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else {
            continue;
        };
        let mut rest = rest.trim_start();
        // Options are bracketed and may contain spaces: `[ arch=amd64 signed-by=/k.gpg ]`.
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = &rest[end + 1..];
        }
        let mut words = rest.split_whitespace().map(str::to_owned);
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        entries.push(Entry { uris: vec![uri], suites: vec![suite], components: words.collect() });
    }
    entries
}

/// deb822 stanzas (blank-line separated `Field: value` lines, continuation lines indented,
/// `#` comment lines anywhere); stanzas with `Enabled: no` or without type `deb` are skipped.
fn deb822(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut finish = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        };
        let enabled = get("Enabled").is_none_or(|v| v.first().is_none_or(|v| !v.eq_ignore_ascii_case("no")));
        let is_deb = get("Types").is_some_and(|t| t.iter().any(|t| t == "deb"));
        if enabled && is_deb {
            entries.push(Entry {
                uris: get("URIs").unwrap_or_default(),
                suites: get("Suites").unwrap_or_default(),
                components: get("Components").unwrap_or_default(),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            finish(&mut fields);
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    finish(&mut fields);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str, suite: &str) -> Option<String> {
        mirror_for(Path::new("/etc/apt/sources.list"), text, suite)
    }

    fn sources(text: &str, suite: &str) -> Option<String> {
        mirror_for(Path::new("/etc/apt/sources.list.d/debian.sources"), text, suite)
    }

    #[test]
    fn one_line_sources() {
        let text = "# a comment\n\
            deb-src http://src.example/debian bookworm main\n\
            deb http://security.debian.org/debian-security bookworm-security main\n\
            deb https://download.docker.com/linux/debian bookworm stable\n\
            deb https://packages.sury.org/php/ bookworm main\n\
            deb [arch=amd64] http://mirror.example/debian/ bookworm main contrib # trailing\n";
        assert_eq!(list(text, "bookworm").as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(list(text, "bookworm-security").as_deref(), Some("http://security.debian.org/debian-security"));
        assert_eq!(list(text, "trixie"), None);
        let spaced = "deb [ arch=amd64 signed-by=/k.gpg ] http://m.example/debian bookworm main";
        assert_eq!(list(spaced, "bookworm").as_deref(), Some("http://m.example/debian"));
        assert_eq!(list("deb file:/srv/debian bookworm main", "bookworm"), None, "http(s) only");
        assert_eq!(list("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main", "bookworm"), None);
    }

    #[test]
    fn deb822_sources_like_this_hosts() {
        let text = "Types: deb\n\
            # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
            URIs: http://deb.debian.org/debian\n\
            Suites: bookworm bookworm-updates\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
            \n\
            Types: deb\n\
            URIs: http://deb.debian.org/debian-security\n\
            Suites: bookworm-security\n\
            Components: main\n";
        assert_eq!(sources(text, "bookworm").as_deref(), Some("http://deb.debian.org/debian"));
        assert_eq!(sources(text, "bookworm-security").as_deref(), Some("http://deb.debian.org/debian-security"));
        assert_eq!(sources(text, "trixie"), None);
    }

    #[test]
    fn deb822_details() {
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n\n\
            types: deb-src deb\nuris: http://a.example/debian\n  http://b.example/debian\nsuites: bookworm\ncomponents: main\n";
        assert_eq!(sources(disabled, "bookworm").as_deref(), Some("http://a.example/debian"));
        let src_only = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n";
        assert_eq!(sources(src_only, "bookworm"), None);
        let nodesource = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n";
        assert_eq!(sources(nodesource, "bookworm"), None);
        let folded = "Types: deb\nURIs:\n http://f.example/debian\nSuites: bookworm\nComponents: main contrib\n";
        assert_eq!(sources(folded, "bookworm").as_deref(), Some("http://f.example/debian"));
    }
}
