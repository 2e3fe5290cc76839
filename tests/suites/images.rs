//! Images built from the recipes, in a real private LXD: the Debian image boots systemd,
//! gets an address from the bridge, runs sshd with per-container host keys and machine-id.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ssp_lxd::wire::{ConfigMap, InstancesPost};
use ssp_lxd::{Client, FileContent};
use ssp_testkit::{unique_name, PrivateLxd};

const T: Duration = Duration::from_secs(300);

async fn launch(client: &Client, alias: &str, prefix: &str) -> Result<String> {
    let name = unique_name(prefix);
    client.create_instance(&InstancesPost::container_from_alias(&name, alias)).await?.wait(Some(T)).await?;
    client.start_instance(&name, T).await?;
    Ok(name)
}

async fn file_text(client: &Client, name: &str, path: &str) -> Result<String> {
    match client.pull_file(name, path).await?.content {
        FileContent::File(bytes) => Ok(String::from_utf8_lossy(&bytes).trim().to_string()),
        other => bail!("{path} is not a file: {other:?}"),
    }
}

/// What systemd says once boot has finished (`running`, `degraded`, …). Right after start
/// PID 1 may not accept connections yet, so asking is retried for a while.
async fn boot_state(client: &Client, name: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = client.exec_output(name, &["systemctl", "is-system-running", "--wait"], b"").await?;
        let state = out.stdout_text().trim().to_string();
        if !state.is_empty() && state != "starting" {
            return Ok(state);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{name}: systemd never finished booting: {}",
            out.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn debian_boots_with_network_and_sshd(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    lxd.ensure_image("debian-12").await?;
    let first = launch(&client, "debian-12", "deb").await?;
    let second = launch(&client, "debian-12", "deb").await?;

    for name in [&first, &second] {
        let boot = boot_state(&client, name).await?;
        if boot != "running" {
            let failed = client.exec_output(name, &["systemctl", "--failed", "--no-legend"], b"").await?;
            bail!("{name} booted to {boot:?}; failed units:\n{}", failed.stdout_text());
        }
        let hostname = file_text(&client, name, "/etc/hostname").await?;
        ensure!(&hostname == name, "hostname {hostname:?}, expected {name}");
    }

    // An address from the bridge's DHCP, in the bridge's subnet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let address = loop {
        let state = client.instance_state(&first).await?;
        let found = state
            .network
            .as_ref()
            .and_then(|n| n.get("eth0"))
            .and_then(|eth0| eth0.addresses.iter().find(|a| a.family == "inet").map(|a| a.address.clone()));
        if let Some(address) = found {
            break address;
        }
        ensure!(tokio::time::Instant::now() < deadline, "no IPv4 address on eth0: {:?}", state.network);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(address.starts_with(&format!("{}.", lxd.subnet)), "address {address} outside {}.0/24", lxd.subnet);

    // sshd answers, reached from the host through a unix socket (an LXD proxy device):
    // no route to the bridge is needed.
    let socket = lxd.dir().join(format!("{first}.ssh.sock"));
    let read = client.instance(&first).await?;
    let mut put = read.value.to_put();
    put.devices.insert(
        "ssh".into(),
        ConfigMap::from([
            ("type".into(), "proxy".into()),
            ("listen".into(), format!("unix:{}", socket.display())),
            ("connect".into(), "tcp:127.0.0.1:22".into()),
            ("bind".into(), "host".into()),
        ]),
    );
    client.update_instance(&first, &put, read.etag.as_deref()).await?.wait(Some(T)).await?;
    let banner = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut stream = UnixStream::connect(&socket).with_context(|| format!("connecting {}", socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await??;
    ensure!(banner.starts_with("SSH-2.0-OpenSSH"), "banner {banner:?}");

    // Each container has its own identity.
    let keys = [
        file_text(&client, &first, "/etc/ssh/ssh_host_ed25519_key.pub").await?,
        file_text(&client, &second, "/etc/ssh/ssh_host_ed25519_key.pub").await?,
    ];
    ensure!(keys[0].starts_with("ssh-ed25519 ") && keys[0] != keys[1], "host keys: {keys:?}");
    let ids =
        [file_text(&client, &first, "/etc/machine-id").await?, file_text(&client, &second, "/etc/machine-id").await?];
    ensure!(ids[0].len() == 32 && ids[0] != ids[1], "machine ids: {ids:?}");

    for name in [first, second] {
        client.stop_instance(&name, Duration::from_secs(30), false).await.context("clean stop of systemd")?;
        client.delete_instance(&name).await?.wait(Some(T)).await?;
    }
    Ok(())
}

async fn busybox_boots_and_gets_an_address(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    lxd.ensure_image("busybox").await?;
    let name = launch(&client, "busybox", "bb").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = client.instance_state(&name).await?;
        let eth0 = state.network.as_ref().and_then(|n| n.get("eth0"));
        if eth0.is_some_and(|e| e.addresses.iter().any(|a| a.family == "inet" && a.address.starts_with(&lxd.subnet))) {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "busybox got no address: {:?}", state.network);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    client.stop_instance(&name, Duration::from_secs(30), false).await.context("clean stop of busybox")?;
    client.delete_instance(&name).await?.wait(Some(T)).await?;
    Ok(())
}

async fn second_install_is_a_no_op(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let first = lxd.ensure_image("busybox").await?;
    let recipe = ssp_image::recipe("busybox")?;
    let options = ssp_image::BuildOptions::default_for_host();
    let again = ssp_image::install::ensure_installed(&client, &recipe, &options, "busybox", &mut |_| {}).await?;
    ensure!(!again.imported && !again.built && again.fingerprint == first, "{again:?}");
    let alias = client.image_alias("busybox").await?;
    ensure!(alias.target == first);
    let image = client.image(&first).await?;
    ensure!(image.properties.get("ssp.recipe").map(String::as_str) == Some("busybox"), "{:?}", image.properties);
    Ok(())
}

async fn a_damaged_tarball_is_refused_and_leaves_no_image(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let recipe = ssp_image::recipe("busybox")?;
    // A busybox build in a private cache whose tarball is then damaged on disk: LXD must
    // refuse it, the error must say so, and no image or alias may remain.
    let scratch = std::env::temp_dir().join(unique_name("ssp-damaged"));
    let options = ssp_image::BuildOptions::in_cache_dir(scratch.join("cache"));
    let built = tokio::task::spawn_blocking({
        let (recipe, options) = (recipe.clone(), options.clone());
        move || ssp_image::build(&recipe, &options, &mut |_| {})
    })
    .await??;
    std::fs::write(&built.tarball, vec![0x5a; usize::try_from(built.size)?])?;
    let images_before = client.images().await?.len();
    let alias = unique_name("damaged");
    let result = ssp_image::install::import_built(&client, &recipe, &built, &alias, &mut |_| {}).await;
    std::fs::remove_dir_all(&scratch)?;
    let err = match result {
        Ok(fingerprint) => bail!("a damaged tarball was imported as {fingerprint}"),
        Err(e) => e,
    };
    ensure!(err.to_string().contains("busybox"), "the error names the image: {err}");
    ensure!(client.images().await?.len() == images_before, "no image may be left behind");
    ensure!(client.image_alias(&alias).await.expect_err("no alias").is_not_found());
    Ok(())
}

ssp_testkit::lxd_tests![
    debian_boots_with_network_and_sshd,
    busybox_boots_and_gets_an_address,
    second_install_is_a_no_op,
    a_damaged_tarball_is_refused_and_leaves_no_image,
];
