//! The SSH gateway's decisions: who a login names, which container it lands in, where a
//! forwarded connection goes, which environment a client may set, and how long a source that
//! keeps failing waits. Pure functions; the gateway (`ssp-gateway`) does the IO.
//!
//! A login is `owner` or `owner+container`. Another user's container answers exactly like a
//! missing one ([`Refusal::NoSuchContainer`]): the gateway never reveals whether a name it
//! refuses exists.

use std::time::Duration;

use crate::names::Name;

/// The separator between owner and container in an SSH login (`alice+dev`).
pub const LOGIN_SEPARATOR: char = '+';

/// An SSH login name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user whose key must sign.
    pub owner: Name,
    /// The container asked for, if the login names one.
    pub container: Option<Name>,
}

/// Why the gateway refuses a login or a channel. The messages are what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The login is not `owner` or `owner+container` with valid names.
    #[error("login {0:?} is not USER or USER+CONTAINER")]
    BadLogin(String),
    /// Missing, or another user's: the same answer for both.
    #[error("no container {0:?} of yours; `ssp container list` shows yours")]
    NoSuchContainer(String),
    /// The login names no container and the user has none.
    #[error("you have no container; make one with `ssp container create NAME`")]
    NoContainers,
    /// The login names no container and the user has several, none named `default`.
    #[error("you have several containers ({}); log in as {owner}+CONTAINER, e.g. {owner}+{}@HOST", .names.join(", "), .names.first().map_or("NAME", String::as_str))]
    Ambiguous {
        /// The user.
        owner: String,
        /// Their containers, sorted.
        names: Vec<String>,
    },
}

/// Parses `owner` or `owner+container`; both parts must be valid names.
pub fn parse_login(login: &str) -> Result<Login, Refusal> {
    let bad = || Refusal::BadLogin(login.chars().take(140).collect());
    let (owner, container) = match login.split_once(LOGIN_SEPARATOR) {
        Some((owner, container)) => (owner, Some(container)),
        None => (login, None),
    };
    let owner = Name::parse(owner).map_err(|_| bad())?;
    let container = container.map(Name::parse).transpose().map_err(|_| bad())?;
    Ok(Login { owner, container })
}

/// The name of the container a default login (`ssh alice@HOST`) lands in, when the user has
/// several.
pub const DEFAULT_CONTAINER: &str = "default";

/// Which of `owned` (`owner`'s container names) a login lands in: the one it names, else
/// the only one, else the one named [`DEFAULT_CONTAINER`].
pub fn choose_container<'a>(owner: &Name, requested: Option<&Name>, owned: &'a [Name]) -> Result<&'a Name, Refusal> {
    if let Some(requested) = requested {
        return owned.iter().find(|n| *n == requested).ok_or_else(|| Refusal::NoSuchContainer(requested.to_string()));
    }
    match owned {
        [] => Err(Refusal::NoContainers),
        [only] => Ok(only),
        many => many.iter().find(|n| n.as_str() == DEFAULT_CONTAINER).ok_or_else(|| {
            let mut names: Vec<String> = many.iter().map(Name::to_string).collect();
            names.sort_unstable();
            Refusal::Ambiguous { owner: owner.to_string(), names }
        }),
    }
}

/// What a forwarded connection (`direct-tcpip`: `-L`, `-W`, ProxyJump) may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The container, named explicitly or `None` for the login's own (`localhost`).
    pub container: Option<Name>,
    /// What inside it.
    pub to: Reach,
}

/// Where in a container a forward goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A TCP port on its loopback.
    Port(u16),
    /// The login's desktop session (VNC), whatever port was asked for: the gateway answers
    /// it with ssp's own desktop relay, as the portal does.
    Desktop,
}

/// The host name that forwards to the login's desktop: `ssh -L 5901:desktop:5901 alice+dev@HOST`.
pub const DESKTOP_HOST: &str = "desktop";

/// Where a `direct-tcpip` request for `host:port` goes for a user logged in as `login`:
/// `localhost` (or `127.0.0.1`, `::1`) is the login's container; `NAME` or `OWNER+NAME` is
/// the owner's container `NAME`; [`DESKTOP_HOST`] is the login container's desktop (a
/// container named `desktop` is still reached as `OWNER+desktop`). Anything else — another owner, an address, a name that is
/// not valid — is refused like a missing container, so no host outside the user's own
/// containers is ever reached.
pub fn forward_target(login: &Login, host: &str, port: u32) -> Result<ForwardTarget, Refusal> {
    let refuse = || Refusal::NoSuchContainer(host.chars().take(140).collect());
    let port = u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(refuse)?;
    if matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return Ok(ForwardTarget { container: login.container.clone(), to: Reach::Port(port) });
    }
    if host == DESKTOP_HOST {
        return Ok(ForwardTarget { container: login.container.clone(), to: Reach::Desktop });
    }
    let name = match host.split_once(LOGIN_SEPARATOR) {
        Some((owner, name)) if owner == login.owner.as_str() => name,
        Some(_) => return Err(refuse()),
        None => host,
    };
    let container = Name::parse(name).map_err(|_| refuse())?;
    Ok(ForwardTarget { container: Some(container), to: Reach::Port(port) })
}

/// Whether a client may set environment variable `name` (as OpenSSH's `AcceptEnv LANG LC_*`,
/// plus a few terminal ones): never `PATH`, `LD_*` or anything else that changes what runs.
pub fn accepts_env(name: &str) -> bool {
    name == "LANG"
        || name == "TZ"
        || name == "COLORTERM"
        || (name.starts_with("LC_") && name[3..].bytes().all(|b| b.is_ascii_uppercase() || b == b'_') && name.len() > 3)
}

/// How long a source with `failures` recent failed connections waits before its next
/// connection may try a key: nothing for the first few, then doubling up to `cap`. The cap
/// must stay below the pre-authentication timeout, or a source — and everyone behind the
/// same address — could never log in again until its failures are forgotten.
pub fn source_penalty(failures: u32, cap: Duration) -> Duration {
    const FREE: u32 = 3;
    if failures <= FREE {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE - 1).min(16);
    Duration::from_secs(1u64 << exponent).min(cap)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn logins_are_owner_or_owner_plus_container() {
        assert_eq!(parse_login("alice").unwrap(), Login { owner: name("alice"), container: None });
        assert_eq!(parse_login("alice+dev").unwrap(), Login { owner: name("alice"), container: Some(name("dev")) });
        for bad in ["", "+dev", "alice+", "Alice", "alice+dev+x", "alice+../x", "root@x", "a b"] {
            assert!(matches!(parse_login(bad), Err(Refusal::BadLogin(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_container_is_the_named_the_only_or_the_default_one() {
        let one = [name("dev")];
        let many = [name("web"), name("dev")];
        let with_default = [name("web"), name("default")];
        let alice = name("alice");
        assert_eq!(choose_container(&alice, None, &one).unwrap().as_str(), "dev");
        assert_eq!(choose_container(&alice, Some(&name("dev")), &many).unwrap().as_str(), "dev");
        assert_eq!(choose_container(&alice, None, &with_default).unwrap().as_str(), "default");
        assert_eq!(choose_container(&alice, None, &[]), Err(Refusal::NoContainers));
        let ambiguous = choose_container(&alice, None, &many).unwrap_err();
        assert_eq!(ambiguous, Refusal::Ambiguous { owner: "alice".into(), names: vec!["dev".into(), "web".into()] });
        assert!(
            ambiguous.to_string().contains("(dev, web)") && ambiguous.to_string().contains("alice+dev@HOST"),
            "{ambiguous}"
        );
        assert_eq!(choose_container(&alice, Some(&name("x")), &many), Err(Refusal::NoSuchContainer("x".into())));
    }

    #[test]
    fn forwards_reach_only_the_owners_containers() {
        let login = parse_login("alice+dev").unwrap();
        let own = |c: &str, port| ForwardTarget { container: Some(name(c)), to: Reach::Port(port) };
        assert_eq!(forward_target(&login, "localhost", 22).unwrap(), own("dev", 22));
        assert_eq!(forward_target(&login, "web", 8080).unwrap(), own("web", 8080));
        assert_eq!(forward_target(&login, "alice+web", 22).unwrap(), own("web", 22));
        let plain = parse_login("alice").unwrap();
        assert_eq!(forward_target(&plain, "::1", 22).unwrap(), ForwardTarget { container: None, to: Reach::Port(22) });
        // The desktop: the login's container, any port; a container named so by its full name.
        let desktop = |container: Option<&str>| ForwardTarget { container: container.map(name), to: Reach::Desktop };
        assert_eq!(forward_target(&login, "desktop", 5901).unwrap(), desktop(Some("dev")));
        assert_eq!(forward_target(&plain, "desktop", 5900).unwrap(), desktop(None));
        assert_eq!(forward_target(&login, "alice+desktop", 22).unwrap(), own("desktop", 22));
        assert!(forward_target(&login, "desktop", 0).is_err());
        for host in ["bob+dev", "10.0.0.1", "example.com", "", "Dev", "alice+", "a+b+c"] {
            assert_eq!(
                forward_target(&login, host, 22),
                Err(Refusal::NoSuchContainer(host.into())),
                "{host:?} must be refused like a missing container"
            );
        }
        assert!(forward_target(&login, "web", 0).is_err());
        assert!(forward_target(&login, "web", 70000).is_err());
    }

    #[test]
    fn foreign_and_missing_containers_read_the_same() {
        let login = parse_login("alice").unwrap();
        let foreign = forward_target(&login, "bob+dev", 22).unwrap_err().to_string();
        let missing = choose_container(&name("alice"), Some(&name("bob-dev")), &[name("dev")]).unwrap_err().to_string();
        assert_eq!(foreign.replace("bob+dev", "X"), missing.replace("bob-dev", "X"));
    }

    #[test]
    fn only_locale_and_terminal_variables_are_accepted() {
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "TZ", "COLORTERM"] {
            assert!(accepts_env(ok), "{ok}");
        }
        for refused in ["PATH", "LD_PRELOAD", "LC_", "LC_x", "HOME", "USER", "BASH_ENV", "SHELL", ""] {
            assert!(!accepts_env(refused), "{refused}");
        }
    }

    #[test]
    fn the_penalty_grows_and_is_capped() {
        let cap = Duration::from_secs(10);
        assert_eq!(source_penalty(0, cap), Duration::ZERO);
        assert_eq!(source_penalty(3, cap), Duration::ZERO);
        assert_eq!(source_penalty(4, cap), Duration::from_secs(1));
        assert_eq!(source_penalty(5, cap), Duration::from_secs(2));
        assert_eq!(source_penalty(1000, cap), cap);
        assert_eq!(source_penalty(u32::MAX, Duration::ZERO), Duration::ZERO);
        let mut last = Duration::ZERO;
        for failures in 0..100 {
            assert!(source_penalty(failures, cap) >= last);
            last = source_penalty(failures, cap);
        }
    }
}
