//! One module per command noun, and what they share: the connection to the daemon, the
//! caller's identity, and parsers for the arguments several nouns take.

pub mod admin;
pub mod container;
pub mod desktop;
pub mod exec;
pub mod gpu;
pub mod home;
pub mod image;
pub mod info;
pub mod key;
pub mod login;
pub mod serve;
pub mod share;
pub mod snapshot;
pub mod sshconfig;
pub mod token;
pub mod user;

use std::fmt;
use std::io::Read;

use anyhow::Context;
use ssp_core::names::Name;
use ssp_core::size::ByteSize;

use crate::client::Client;
use crate::config;
use crate::output::InputError;

/// A client for the daemon the config (or the environment) names.
pub fn connect() -> anyhow::Result<Client> {
    let settings = config::load()?;
    Ok(Client::from_settings(&settings)?)
}

/// The caller's user name, as the daemon knows it.
pub async fn caller(client: &Client) -> anyhow::Result<String> {
    Ok(client.info().await.context("asking the ssp daemon who you are")?.user)
}

/// `user` if given, else the caller.
pub async fn user_or_caller(client: &Client, user: Option<Name>) -> anyhow::Result<String> {
    match user {
        Some(user) => Ok(user.to_string()),
        None => caller(client).await,
    }
}

/// A container named on the command line: `OWNER/NAME`, or `NAME` for the caller's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The owner, when given.
    pub owner: Option<Name>,
    /// The container's name.
    pub name: Name,
}

impl std::str::FromStr for ContainerRef {
    type Err = ssp_core::names::NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            // A second `/` lands in the name, whose rule refuses it with a clear message.
            Some((owner, name)) => Ok(ContainerRef { owner: Some(Name::parse(owner)?), name: Name::parse(name)? }),
            None => Ok(ContainerRef { owner: None, name: Name::parse(text)? }),
        }
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Some(owner) => write!(f, "{owner}/{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl ContainerRef {
    /// The owner and name, asking the daemon who the caller is when no owner was given.
    pub async fn resolve(&self, client: &Client) -> anyhow::Result<(String, String)> {
        let owner = match &self.owner {
            Some(owner) => owner.to_string(),
            None => caller(client).await?,
        };
        Ok((owner, self.name.to_string()))
    }
}

/// A size argument (`16GiB`, `512M`), checked here so a typo fails before anything is sent;
/// sent as typed, since the daemon parses it with the same rules.
pub fn size(text: &str) -> Result<String, ssp_core::size::SizeError> {
    ByteSize::parse(text)?;
    Ok(text.to_string())
}

/// A size argument that must be above zero (a container's memory or disk).
pub fn nonzero_size(text: &str) -> Result<String, ssp_core::size::SizeError> {
    ByteSize::parse_nonzero(text)?;
    Ok(text.to_string())
}

/// Reads a secret from standard input: all of it, less one trailing newline (what `echo`
/// and most password managers add), so a secret may still contain inner spaces.
pub fn secret_from_stdin(what: &str) -> anyhow::Result<String> {
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let secret = secret.strip_suffix('\n').unwrap_or(&secret);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(InputError(format!("the {what} on standard input is empty")).into());
    }
    Ok(secret.to_string())
}

/// The public keys in an OpenSSH `.pub` or `authorized_keys` text: one per line, blank lines
/// and `#` comments skipped.
pub fn public_keys(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_string).collect()
}

/// The public keys in `path` (`-` for standard input); none is an error that names the file.
pub fn read_public_keys(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read public keys from standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the public key file {}", path.display()))?
    };
    let keys = public_keys(&text);
    if keys.is_empty() {
        return Err(InputError(format!(
            "{} holds no public key: give a .pub file such as ~/.ssh/id_ed25519.pub",
            path.display()
        ))
        .into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_refs_take_an_optional_owner() -> anyhow::Result<()> {
        let own: ContainerRef = "box".parse()?;
        assert_eq!(own, ContainerRef { owner: None, name: Name::parse("box")? });
        assert_eq!(own.to_string(), "box");
        let other: ContainerRef = "alice/box-2".parse()?;
        assert_eq!(other.owner, Some(Name::parse("alice")?));
        assert_eq!(other.name.as_str(), "box-2");
        assert_eq!(other.to_string(), "alice/box-2");
        for bad in ["", "/box", "alice/", "a/b/c", "Alice/box", "../x", "box;rm", "alice/box x"] {
            assert!(bad.parse::<ContainerRef>().is_err(), "{bad:?} was accepted");
        }
        Ok(())
    }

    #[test]
    fn sizes_are_checked_and_kept_as_typed() {
        assert_eq!(size("16GiB").ok().as_deref(), Some("16GiB"));
        assert_eq!(size("0").ok().as_deref(), Some("0"));
        assert_eq!(nonzero_size("512M").ok().as_deref(), Some("512M"));
        assert!(nonzero_size("0GiB").is_err());
        assert!(size("16 GiB").is_err());
        assert!(size("-1G").is_err());
        assert!(size("16XB").is_err());
    }

    #[test]
    fn public_key_files_skip_blanks_and_comments() {
        let text = "# laptop\nssh-ed25519 AAAA one@laptop\n\n  ssh-rsa BBBB two  \r\n#ssh-dss old\n";
        assert_eq!(public_keys(text), vec!["ssh-ed25519 AAAA one@laptop", "ssh-rsa BBBB two"]);
        assert!(public_keys("\n# nothing\n").is_empty());
    }

    #[test]
    fn a_key_file_without_keys_is_bad_input() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("empty.pub");
        std::fs::write(&file, "# only a comment\n")?;
        let error = read_public_keys(&file).err().ok_or_else(|| anyhow::anyhow!("accepted"))?;
        assert!(error.downcast_ref::<InputError>().is_some(), "{error}");
        assert!(read_public_keys(&dir.path().join("missing.pub")).is_err());
        Ok(())
    }
}
