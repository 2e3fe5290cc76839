//! `ssp ssh-config`: an OpenSSH client configuration with a `Host` entry per container of
//! yours, through the SSH gateway, that `ssh`, `scp`, VS Code Remote-SSH and PyCharm use as
//! is; the gateway's host key comes pinned (`HostKeyAlias` plus a `known_hosts` line), so no
//! client ever trusts it on first use. With `--frp-server`, the frp client configuration
//! that publishes the gateway's port on an frp server instead, for access from outside the
//! LAN.

use anyhow::Context;
use clap::Args;

use crate::output::InputError;

/// `ssp ssh-config`.
#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The gateway's host name as clients reach it (default: the host of your ssp URL).
    #[arg(long)]
    pub host: Option<String>,
    /// The gateway's port as clients reach it (default: the port it listens on).
    #[arg(long)]
    pub port: Option<u16>,
    /// Your private key file (IdentityFile); default: OpenSSH's own choice.
    #[arg(long)]
    pub identity: Option<String>,
    /// Print only the known_hosts lines: the gateway's key and your containers' pinned sshd keys.
    #[arg(long)]
    pub known_hosts: bool,
    /// The known_hosts file the entries name (UserKnownHostsFile).
    #[arg(long, default_value = "~/.ssh/known_hosts", value_name = "FILE")]
    pub known_hosts_file: String,
    /// Print an frpc.toml that forwards the gateway through this frp server (HOST or HOST:PORT).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub frp_server: Option<String>,
    /// The port the frp server opens for the gateway (with --frp-server).
    #[arg(long, default_value_t = 6022)]
    pub frp_remote_port: u16,
}

/// What the configuration is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Host name clients use.
    pub host: String,
    /// Port clients use.
    pub port: u16,
    /// The host key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
}

/// The alias every entry verifies the gateway's key under: one known_hosts line for all.
pub const HOST_KEY_ALIAS: &str = "ssp-gateway";

/// A container in the configuration: its name and the sshd host key ssp pinned, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The container's name.
    pub name: String,
    /// Its sshd host key line, when pinned.
    pub sshd_key: Option<String>,
}

/// The alias a container's sshd key is verified under.
fn sshd_alias(owner: &str, name: &str) -> String {
    format!("ssp-{owner}-{name}")
}

/// The known_hosts lines: the gateway's key and each pinned container sshd key.
pub fn known_hosts_lines(gateway: &Gateway, owner: &str, containers: &[Entry]) -> String {
    let mut text = format!("{HOST_KEY_ALIAS} {}\n", gateway.host_key);
    for entry in containers {
        if let Some(key) = &entry.sshd_key {
            text.push_str(&format!("{} {key}\n", sshd_alias(owner, &entry.name)));
        }
    }
    text
}

/// The OpenSSH configuration: a `Host NAME` per container through the gateway (`User
/// owner+NAME`), and, where ssp pinned the container's sshd key, a `Host NAME-sshd` that
/// jumps through the gateway to that sshd.
pub fn render(
    gateway: &Gateway,
    owner: &str,
    containers: &[Entry],
    identity: Option<&str>,
    known_hosts: &str,
) -> String {
    let mut text = format!(
        "# ssp: {owner}'s containers through the SSH gateway at {host}:{port}\n\
         # Save this as ~/.ssh/ssp_config and add `Include ssp_config` at the top of ~/.ssh/config;\n\
         # `ssp ssh-config --known-hosts >> {known_hosts}` pins the gateway's (and the containers' sshd) keys.\n",
        host = gateway.host,
        port = gateway.port,
    );
    let common = |text: &mut String| {
        text.push_str(&format!("  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n"));
        if let Some(identity) = identity {
            text.push_str(&format!("  IdentityFile {identity}\n  IdentitiesOnly yes\n"));
        }
    };
    for entry in containers {
        text.push_str(&format!(
            "\nHost {name}\n  HostName {host}\n  Port {port}\n  User {owner}+{name}\n  HostKeyAlias {HOST_KEY_ALIAS}\n",
            name = entry.name,
            host = gateway.host,
            port = gateway.port,
        ));
        common(&mut text);
    }
    if containers.iter().any(|entry| entry.sshd_key.is_some()) {
        text.push_str(&format!(
            "\nHost ssp-gateway-jump\n  HostName {host}\n  Port {port}\n  User {owner}\n  HostKeyAlias {HOST_KEY_ALIAS}\n",
            host = gateway.host,
            port = gateway.port,
        ));
        common(&mut text);
        for entry in containers.iter().filter(|entry| entry.sshd_key.is_some()) {
            text.push_str(&format!(
                "\nHost {name}-sshd\n  HostName {name}\n  User {owner}\n  ProxyJump ssp-gateway-jump\n  HostKeyAlias {alias}\n",
                name = entry.name,
                alias = sshd_alias(owner, &entry.name),
            ));
            common(&mut text);
        }
    }
    text
}

/// An frp client configuration (frp ≥ 0.52, TOML) that publishes the gateway's port.
pub fn render_frp(server: &str, local_port: u16, remote_port: u16) -> String {
    let (address, port) = match server.rsplit_once(':') {
        Some((address, port)) if port.parse::<u16>().is_ok() => (address, port.to_string()),
        _ => (server, "7000".to_string()),
    };
    format!(
        "# frpc.toml: publishes ssp's SSH gateway (127.0.0.1:{local_port}) as {address}:{remote_port}.\n\
         # Run `frpc -c frpc.toml` on this host; users then `ssh -p {remote_port} USER+CONTAINER@{address}`\n\
         # (or `ssp ssh-config --host {address} --port {remote_port}`). Only SSH crosses frp: the\n\
         # gateway still authenticates every key, and clients still verify its host key.\n\
         serverAddr = \"{address}\"\n\
         serverPort = {port}\n\
         # auth.method = \"token\"\n\
         # auth.token = \"the token of your frps\"\n\
         \n\
         [[proxies]]\n\
         name = \"ssp-gateway\"\n\
         type = \"tcp\"\n\
         localIP = \"127.0.0.1\"\n\
         localPort = {local_port}\n\
         remotePort = {remote_port}\n"
    )
}

/// Runs `ssp ssh-config`.
pub async fn run(args: SshConfigArgs) -> anyhow::Result<()> {
    let client = super::connect()?;
    let info = client.info().await.context("asking the ssp daemon about its gateway")?;
    let listen = info
        .gateway
        .as_ref()
        .ok_or_else(|| InputError("the ssp daemon runs no SSH gateway ([gateway] listen in ssp.toml)".into()))?;
    let bound: std::net::SocketAddr = listen.listen.parse().context("the gateway's address")?;
    if let Some(server) = &args.frp_server {
        print!("{}", render_frp(server, bound.port(), args.frp_remote_port));
        return Ok(());
    }
    let url_host = url_host(&client.url());
    let gateway = Gateway {
        host: args.host.clone().unwrap_or(url_host),
        port: args.port.unwrap_or(bound.port()),
        host_key: listen.host_key.clone(),
    };
    let mut containers: Vec<Entry> = client
        .containers(Some(&info.user))
        .await?
        .into_iter()
        .map(|c| Entry { name: c.name, sshd_key: c.ssh_host_key })
        .collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    if args.known_hosts {
        print!("{}", known_hosts_lines(&gateway, &info.user, &containers));
        return Ok(());
    }
    print!("{}", render(&gateway, &info.user, &containers, args.identity.as_deref(), &args.known_hosts_file));
    Ok(())
}

/// The host of an `https://HOST:PORT` URL; `localhost` for a unix socket.
fn url_host(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => host,
    };
    if host.is_empty() {
        "localhost".into()
    } else {
        host.trim_start_matches('[').trim_end_matches(']').into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Gateway {
        Gateway { host: "gpu1.lab".into(), port: 2222, host_key: "ssh-ed25519 AAAAC3Nza".into() }
    }

    #[test]
    fn one_host_per_container_with_the_key_pinned() {
        let containers = [
            Entry { name: "dev".into(), sshd_key: Some("ssh-ed25519 AAAAdev".into()) },
            Entry { name: "web".into(), sshd_key: None },
        ];
        let text = render(&gateway(), "alice", &containers, Some("~/.ssh/id_ed25519"), "~/.ssh/known_hosts");
        assert!(
            text.contains(
                "\nHost dev\n  HostName gpu1.lab\n  Port 2222\n  User alice+dev\n  HostKeyAlias ssp-gateway\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nHost web\n"), "{text}");
        assert!(
            text.contains("\nHost dev-sshd\n  HostName dev\n  User alice\n  ProxyJump ssp-gateway-jump\n"),
            "{text}"
        );
        assert!(!text.contains("web-sshd"), "{text}");
        assert!(text.contains("StrictHostKeyChecking yes") && !text.contains("StrictHostKeyChecking no"), "{text}");
        assert!(text.contains("IdentityFile ~/.ssh/id_ed25519"), "{text}");
        assert_eq!(
            known_hosts_lines(&gateway(), "alice", &containers),
            "ssp-gateway ssh-ed25519 AAAAC3Nza\nssp-alice-dev ssh-ed25519 AAAAdev\n"
        );
    }

    #[test]
    fn frp_forwards_the_gateway_port() {
        let text = render_frp("frp.example.org:7001", 2222, 6022);
        assert!(text.contains("serverAddr = \"frp.example.org\"\nserverPort = 7001\n"), "{text}");
        assert!(text.contains("localPort = 2222\nremotePort = 6022\n"), "{text}");
        assert!(render_frp("frp.example.org", 2222, 6022).contains("serverPort = 7000"));
    }

    #[test]
    fn the_host_comes_from_the_url() {
        assert_eq!(url_host("https://gpu1.lab:8443"), "gpu1.lab");
        assert_eq!(url_host("https://[::1]:8443"), "::1");
        assert_eq!(url_host("unix:/run/ssp/ssp.sock"), "localhost");
    }
}
