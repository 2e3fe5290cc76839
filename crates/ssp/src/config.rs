//! The CLI's own settings: which ssp daemon to talk to, the token to show it, and the
//! daemon's certificate, pinned at `ssp login`.
//!
//! The file is TOML at `$SSP_CONFIG`, else `$XDG_CONFIG_HOME/ssp/config.toml`, else
//! `~/.config/ssp/config.toml`. `SSP_URL` and `SSP_TOKEN` override what the file says, so a
//! script can point one command elsewhere without touching the file (an empty `SSP_TOKEN`
//! means no token: root over the daemon's socket needs none). The file holds a bearer
//! secret, so it is written with mode 0600 in a folder made with mode 0700, and replaced
//! atomically (a crash mid-write leaves the old file, never half of a new one).
//!
//! This module only reads and writes settings; it opens no connection.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "SSP_CONFIG";
/// Environment variable overriding the daemon's URL.
pub const URL_ENV: &str = "SSP_URL";
/// Environment variable overriding the token.
pub const TOKEN_ENV: &str = "SSP_TOKEN";

/// What `ssp login` tells a person who is not logged in yet.
pub const LOGIN_HINT: &str =
    "run `ssp login URL --token TOKEN` (scripts/up logs in the admin who ran it), or set SSP_URL and SSP_TOKEN";

/// The config file's contents. Every field may be missing: a fresh file, or one after
/// `ssp logout`, which keeps the URL and certificate and drops the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://host:port` or `unix:/path/to/ssp.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The bearer token (`ssp_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The daemon's TLS certificate (PEM): the only certificate trusted for `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// Settings in force for one command: the file with the environment laid over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The daemon's URL, if any source gave one.
    pub url: Option<String>,
    /// The token, if any source gave one.
    pub token: Option<String>,
    /// The pinned certificate (PEM), from the file only.
    pub ca_cert: Option<String>,
    /// The file consulted, for messages.
    pub path: PathBuf,
}

/// The config file's path, from the process environment.
pub fn path() -> anyhow::Result<PathBuf> {
    path_from(&|name| std::env::var_os(name))
        .context("cannot tell where the ssp config file lives: set SSP_CONFIG to its path (or HOME or XDG_CONFIG_HOME)")
}

/// The config file's path given a way to read environment variables; `None` when neither
/// `SSP_CONFIG`, `XDG_CONFIG_HOME` nor `HOME` is set.
fn path_from(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    // Empty values count as unset, as the XDG base directory specification says.
    let var = |name: &str| env(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(path) = var(CONFIG_ENV) {
        return Some(path);
    }
    // XDG says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if let Some(dir) = var("XDG_CONFIG_HOME").filter(|dir| dir.is_absolute()) {
        return Some(dir.join("ssp").join("config.toml"));
    }
    var("HOME").map(|home| home.join(".config").join("ssp").join("config.toml"))
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty config.
    pub fn read(path: &Path) -> anyhow::Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read the ssp config file {}", path.display())),
        };
        toml::from_str(&text).with_context(|| {
            format!("the ssp config file {} is not valid: fix it, or remove it and log in again", path.display())
        })
    }

    /// Writes the config to `path`, readable by its owner only.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("cannot encode the ssp config")?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Only folders made here get 0700; an existing one (say ~/.config) keeps its mode.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = (|| {
            // 0600 from creation on: the token is never readable by others, not even briefly.
            let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        })();
        if let Err(e) = written {
            // Best effort: the write already failed, and that error is the one to report.
            let _ = fs::remove_file(&temporary);
            return Err(e).with_context(|| format!("cannot write the ssp config file {}", path.display()));
        }
        Ok(())
    }

    /// The settings in force: the environment (read through `env`) over this file's values.
    pub fn settings(self, path: PathBuf, env: &dyn Fn(&str) -> Option<String>) -> Settings {
        // An empty SSP_URL counts as unset; an empty SSP_TOKEN means "no token" (root over
        // the daemon's socket needs none), so a script can shed the file's token.
        let token = match env(TOKEN_ENV) {
            Some(token) if token.is_empty() => None,
            Some(token) => Some(token),
            None => self.token,
        };
        let url = env(URL_ENV).filter(|url| !url.is_empty()).or(self.url);
        Settings { url, token, ca_cert: self.ca_cert, path }
    }
}

/// The settings in force for this process: the config file under the environment.
pub fn load() -> anyhow::Result<Settings> {
    let path = path()?;
    let config = Config::read(&path)?;
    Ok(config.settings(path, &|name| std::env::var(name).ok()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn path_with(pairs: &[(&str, &str)]) -> Option<PathBuf> {
        let env = env_of(pairs);
        path_from(&|name| env.get(name).map(OsString::from))
    }

    #[test]
    fn the_path_comes_from_ssp_config_then_xdg_then_home() {
        let all = [("SSP_CONFIG", "/etc/x.toml"), ("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/a")];
        assert_eq!(path_with(&all), Some(PathBuf::from("/etc/x.toml")));
        assert_eq!(path_with(&all[1..]), Some(PathBuf::from("/xdg/ssp/config.toml")));
        assert_eq!(path_with(&all[2..]), Some(PathBuf::from("/home/a/.config/ssp/config.toml")));
        assert_eq!(path_with(&[]), None);
    }

    #[test]
    fn empty_or_relative_variables_are_ignored() {
        let env = [("SSP_CONFIG", ""), ("XDG_CONFIG_HOME", "relative/dir"), ("HOME", "/home/a")];
        assert_eq!(path_with(&env), Some(PathBuf::from("/home/a/.config/ssp/config.toml")));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = Config {
            url: Some("https://file:8443".into()),
            token: Some("ssp_file".into()),
            ca_cert: Some("PEM".into()),
        };
        let env = env_of(&[("SSP_URL", "unix:/run/ssp/ssp.sock"), ("SSP_TOKEN", "ssp_env")]);
        let settings = file.clone().settings(PathBuf::from("/c"), &|name| env.get(name).cloned());
        assert_eq!(settings.url.as_deref(), Some("unix:/run/ssp/ssp.sock"));
        assert_eq!(settings.token.as_deref(), Some("ssp_env"));
        assert_eq!(settings.ca_cert.as_deref(), Some("PEM"));

        let env = env_of(&[("SSP_URL", ""), ("SSP_TOKEN", "")]);
        let settings = file.clone().settings(PathBuf::from("/c"), &|name| env.get(name).cloned());
        assert_eq!(settings.url.as_deref(), Some("https://file:8443"), "an empty SSP_URL does not override");
        assert_eq!(settings.token, None, "an empty SSP_TOKEN sheds the file's token");

        let settings = file.settings(PathBuf::from("/c"), &|_| None);
        assert_eq!(settings.url.as_deref(), Some("https://file:8443"));
        assert_eq!(settings.token.as_deref(), Some("ssp_file"));
    }

    #[test]
    fn a_missing_file_is_an_empty_config() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(Config::read(&dir.path().join("none.toml"))?, Config::default());
        Ok(())
    }

    #[test]
    fn written_files_read_back_and_are_private() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("new").join("ssp").join("config.toml");
        let config = Config {
            url: Some("https://127.0.0.1:8443".into()),
            token: Some("ssp_secret".into()),
            ca_cert: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
        };
        config.write(&path)?;
        assert_eq!(Config::read(&path)?, config);
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        let folder = path.parent().ok_or_else(|| anyhow::anyhow!("no parent"))?;
        assert_eq!(fs::metadata(folder)?.permissions().mode() & 0o777, 0o700);

        // A rewrite replaces the file whole and leaves no temporary file behind.
        let logged_out = Config { token: None, ..config };
        logged_out.write(&path)?;
        assert_eq!(Config::read(&path)?, logged_out);
        assert!(!fs::read_to_string(&path)?.contains("token"));
        assert_eq!(fs::read_dir(folder)?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_broken_file_names_itself() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        fs::write(&path, "url = [")?;
        let error = Config::read(&path).err().ok_or_else(|| anyhow::anyhow!("a broken file was read"))?;
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        fs::write(&path, "urll = \"x\"")?;
        assert!(Config::read(&path).is_err(), "a misspelt key is reported, not ignored");
        Ok(())
    }
}
