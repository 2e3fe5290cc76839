//! The LXD client against a real, private LXD daemon: every call ssp relies on, with the
//! busybox image for speed.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use ssp_lxd::wire::{ConfigMap, InstancesPost, Profile, StorageVolume};
use ssp_lxd::{Client, EventKind, ExecOptions, FileContent, FileMode, StateAction};
use ssp_testkit::{daemon::POOL, unique_name, PrivateLxd};

const IMAGE: &str = "busybox";
const T: Duration = Duration::from_secs(120);

/// Creates and starts a busybox container with a unique name.
async fn running_container(lxd: &PrivateLxd, client: &Client, prefix: &str) -> Result<String> {
    lxd.ensure_image(IMAGE).await?;
    let name = unique_name(prefix);
    client.create_instance(&InstancesPost::container_from_alias(&name, IMAGE)).await?.wait(Some(T)).await?;
    client.start_instance(&name, T).await?;
    Ok(name)
}

async fn remove(client: &Client, name: &str) -> Result<()> {
    client.stop_instance(name, Duration::from_secs(5), true).await.ok();
    client.delete_instance(name).await?.wait(Some(T)).await?;
    Ok(())
}

async fn server_and_resources(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let server = client.server().await?;
    ensure!(server.environment.server_version.starts_with(char::is_numeric), "version: {:?}", server.environment);
    ensure!(server.has_extension("container_exec_recording") || server.api_extensions.len() > 100);
    ensure!(server.environment.storage.contains("btrfs"), "storage drivers: {}", server.environment.storage);
    let resources = client.resources().await?;
    ensure!(resources.cpu.total >= 1 && resources.memory.total > 0, "{resources:?}");
    ensure!(resources.gpu.total as usize == resources.gpu.cards.len());
    Ok(())
}

async fn container_lifecycle(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let name = running_container(lxd, &client, "life").await?;

    let instance = client.instance(&name).await?;
    ensure!(instance.value.is_running(), "status {}", instance.value.status);
    ensure!(instance.etag.is_some(), "GET instance must carry an ETag");
    let state = client.instance_state(&name).await?;
    ensure!(state.pid > 0 && state.processes > 0, "state: {state:?}");
    ensure!(state.memory.usage > 0, "memory usage reported: {:?}", state.memory);
    ensure!(state.network.as_ref().is_some_and(|n| n.contains_key("eth0")), "no eth0 in {:?}", state.network);
    ensure!(client.instance_names().await?.contains(&name));

    // Exec: output, error output and exit code come back separately.
    let out = client.exec_output(&name, &["sh", "-c", "echo out; echo err >&2; exit 3"], b"").await?;
    ensure!(out.exit_code == 3, "exit code {}", out.exit_code);
    ensure!(out.stdout_text() == "out\n" && out.stderr_text() == "err\n", "{out:?}");
    // A program that is not there: a shell's answer, not an error.
    let out = client.exec_output(&name, &["no-such-program"], b"").await?;
    ensure!(out.exit_code == 127 && out.stderr_text().contains("command not found"), "{out:?}");
    // Stdin reaches the command and its end is seen.
    let out = client.exec_output(&name, &["sh", "-c", "wc -c"], &[7u8; 100_000]).await?;
    ensure!(out.stdout_text().trim() == "100000", "wc saw {:?}", out.stdout_text());
    // Environment, working directory and user.
    let options = ExecOptions {
        environment: [("GREETING".to_string(), "hi".to_string())].into(),
        cwd: Some("/tmp".into()),
        uid: 1234,
        gid: 1234,
        ..ExecOptions::default()
    };
    let mut exec =
        client.exec(&name, &["sh".into(), "-c".into(), "echo $GREETING $(pwd) $(id -u)".into()], options).await?;
    exec.stdin.close().await?;
    let mut text = Vec::new();
    while let Some(chunk) = exec.stdout.recv().await {
        text.extend_from_slice(&chunk);
    }
    ensure!(exec.wait().await?.code == 0);
    ensure!(String::from_utf8_lossy(&text) == "hi /tmp 1234\n", "got {:?}", String::from_utf8_lossy(&text));

    // Files: push with ownership and mode, pull back, list a directory.
    let mode = FileMode { uid: 1000, gid: 1001, mode: 0o640 };
    client.push_file(&name, "/root/hello.txt", "version 1\n", mode).await?;
    let pulled = client.pull_file(&name, "/root/hello.txt").await?;
    ensure!(pulled.content == FileContent::File(b"version 1\n".to_vec()), "pulled {:?}", pulled.content);
    ensure!(pulled.mode == mode, "mode {:?}", pulled.mode);
    let listing = client.exec_output(&name, &["stat", "-c", "%u %g %a", "/root/hello.txt"], b"").await?;
    ensure!(listing.stdout_text().trim() == "1000 1001 640", "stat: {}", listing.stdout_text());
    client.create_directory(&name, "/root/dir", FileMode { mode: 0o755, ..FileMode::default() }).await?;
    client.push_file(&name, "/root/dir/a", Bytes::from_static(b"a"), FileMode::default()).await?;
    let dir = client.pull_file(&name, "/root/dir").await?;
    ensure!(dir.content == FileContent::Directory(vec!["a".into()]), "dir {:?}", dir.content);
    let missing = client.pull_file(&name, "/root/nope").await.expect_err("a missing file is an error");
    ensure!(missing.is_not_found(), "missing file: {missing}");

    // Snapshot, change, restore: the change is gone.
    client.create_snapshot(&name, "before").await?.wait(Some(T)).await?;
    client.push_file(&name, "/root/hello.txt", "version 2\n", mode).await?;
    let snapshots = client.snapshots(&name).await?;
    ensure!(snapshots.iter().any(|s| s.name == "before"), "snapshots: {snapshots:?}");
    client.restore_snapshot(&name, "before").await?.wait(Some(T)).await?;
    let restored = client.pull_file(&name, "/root/hello.txt").await?;
    ensure!(restored.content == FileContent::File(b"version 1\n".to_vec()), "after restore: {:?}", restored.content);
    client.delete_snapshot(&name, "before").await?.wait(Some(T)).await?;
    ensure!(client.snapshots(&name).await?.is_empty());

    // A clean stop (init gets the halt signal), then delete: gone. The restore above restarted
    // the container, and a busybox init that is still starting can miss the halt signal (LXD
    // then answers "Failed shutting down instance, status is Running", seen once in a loaded
    // CI run): that one answer is tried again, once; the stop must still be clean.
    if let Err(e) = client.stop_instance(&name, Duration::from_secs(30), false).await {
        ensure!(e.to_string().contains("Failed shutting down instance"), "clean stop: {e}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.stop_instance(&name, Duration::from_secs(30), false).await.context("clean stop, second try")?;
    }
    ensure!(client.instance_state(&name).await?.status == "Stopped");
    client.delete_instance(&name).await?.wait(Some(T)).await?;
    let gone = client.instance(&name).await.expect_err("deleted instance must be gone");
    ensure!(gone.is_not_found(), "after delete: {gone}");
    Ok(())
}

async fn exec_pty_resize_and_signals(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let name = running_container(lxd, &client, "pty").await?;
    let options = ExecOptions { pty: Some((80, 24)), ..ExecOptions::default() };
    // LXD 5.0.2 can drop pty output written just before the process exits (its pty reader
    // races the exit); the pause keeps this test about resize, not about that race.
    let script = "read x; stty size; sleep 1; exit 5";
    let mut exec = client.exec(&name, &["sh".into(), "-c".into(), script.into()], options).await?;
    exec.control.resize(123, 45).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    exec.stdin.write(Bytes::from_static(b"go\r")).await?;
    let mut text = Vec::new();
    while let Some(chunk) = exec.stdout.recv().await {
        text.extend_from_slice(&chunk);
    }
    ensure!(exec.wait().await?.code == 5);
    let text = String::from_utf8_lossy(&text);
    ensure!(text.contains("45 123"), "stty size after resize: {text:?}");

    let sleeper = client.exec(&name, &["sleep".into(), "600".into()], ExecOptions::default()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sleeper.control.signal(9).await?;
    let code = tokio::time::timeout(Duration::from_secs(30), sleeper.wait()).await??.code;
    ensure!(code == 137, "killed by SIGKILL: exit code {code}");
    remove(&client, &name).await
}

async fn events_stream_lifecycle(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    lxd.ensure_image(IMAGE).await?;
    let mut events = client.events(&[EventKind::Lifecycle]).await?;
    let name = unique_name("events");
    client.create_instance(&InstancesPost::container_from_alias(&name, IMAGE)).await?.wait(Some(T)).await?;
    client.start_instance(&name, T).await?;
    let source = format!("/1.0/instances/{name}");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(seen.contains(&"instance-created".to_string()) && seen.contains(&"instance-started".to_string())) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("events seen for {name} so far: {seen:?}"))?
            .context("event stream closed")??;
        if event.lifecycle_source() == Some(source.as_str()) {
            seen.push(event.lifecycle_action().unwrap_or_default().to_string());
        }
    }
    remove(&client, &name).await
}

async fn update_with_etag(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    lxd.ensure_image(IMAGE).await?;
    let name = unique_name("etag");
    client.create_instance(&InstancesPost::container_from_alias(&name, IMAGE)).await?.wait(Some(T)).await?;
    let read = client.instance(&name).await?;
    let mut put = read.value.to_put();
    put.config.insert("user.test".into(), "one".into());
    put.config.insert("limits.memory".into(), "256MiB".into());
    client.update_instance(&name, &put, read.etag.as_deref()).await?.wait(Some(T)).await?;
    let after = client.instance(&name).await?;
    ensure!(after.value.config.get("user.test").map(String::as_str) == Some("one"));
    ensure!(after.value.expanded_config.get("limits.memory").map(String::as_str) == Some("256MiB"));
    // Writing with the ETag read before the first update must fail: someone changed it since.
    put.config.insert("user.test".into(), "two".into());
    let stale = async { client.update_instance(&name, &put, read.etag.as_deref()).await?.wait(Some(T)).await }
        .await
        .expect_err("a stale ETag must be refused");
    ensure!(stale.status() == Some(412), "stale ETag: {stale}");
    remove(&client, &name).await
}

async fn errors_carry_the_daemon_message(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let missing = client.instance("does-not-exist").await.expect_err("missing");
    ensure!(missing.is_not_found(), "{missing}");
    ensure!(missing.to_string().to_lowercase().contains("not found"), "message: {missing}");
    for bad in ["..", ".", ""] {
        let err = client.instance(bad).await.expect_err("bad name");
        ensure!(matches!(err, ssp_lxd::Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    // A name with a slash stays one segment: LXD looks for that odd name and finds nothing.
    let err = client.instance("a/../../1.0").await.expect_err("odd name");
    ensure!(err.is_not_found() || err.status() == Some(400), "{err}");
    let err = async {
        client
            .create_instance(&InstancesPost::container_from_alias(unique_name("noimg"), "no-such-image"))
            .await?
            .wait(Some(T))
            .await
    }
    .await
    .expect_err("unknown image");
    ensure!(err.to_string().contains("no-such-image") || err.is_not_found(), "unknown image: {err}");
    Ok(())
}

async fn operation_wait_times_out(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let name = running_container(lxd, &client, "optime").await?;
    let exec = client.exec(&name, &["sleep".into(), "3".into()], ExecOptions::default()).await?;
    let operation = client.operation_by_id(exec.operation_id().context("an LXD exec has an operation")?).await?;
    let err = operation.wait(Some(Duration::from_secs(1))).await.expect_err("sleep 3 outlives a 1 s wait");
    ensure!(matches!(err, ssp_lxd::Error::Timeout { .. }), "{err}");
    ensure!(exec.wait().await?.code == 0);
    remove(&client, &name).await
}

/// LXD's "busy" is recognised whichever call meets it, and [`Client::when_idle`] waits it
/// out (or gives it back, as busy, when its patience ends first).
///
/// What LXD 5.0.2 refuses while a clean stop runs, found by trying: updates and snapshot
/// restores ("Instance is busy running a "stop" operation"); restarts (forced or not),
/// snapshots and exec go ahead.
async fn a_busy_instance_is_waited_for(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    lxd.ensure_image(IMAGE).await?;
    let name = unique_name("busy");
    // A clean stop signals PID 1 with the halt signal; one that init leaves alone (SIGURG is
    // ignored by default) makes the stop hold the instance for its whole timeout, then fail
    // and leave it running.
    let mut create = InstancesPost::container_from_alias(&name, IMAGE);
    create.config.insert("raw.lxc".into(), "lxc.signal.halt = SIGURG".into());
    client.create_instance(&create).await?.wait(Some(T)).await?;
    client.start_instance(&name, T).await?;
    client.create_snapshot(&name, "s").await?.wait(Some(T)).await?;
    let stop = client.change_state(&name, StateAction::Stop, Duration::from_secs(15), false).await?;
    let holding = client.operations_on(&name).await?;
    ensure!(holding.iter().any(|o| o.id() == stop.id()), "the stop is not listed on {name}: {holding:?}");
    let mut put = client.instance(&name).await?.value.to_put();
    put.description = "changed while busy".into();
    let update = || async { client.update_instance(&name, &put, None).await?.wait(Some(T)).await };
    let busy = update().await.expect_err("an update while a stop holds the instance");
    ensure!(busy.busy_with() == Some("stop"), "not seen as busy with the stop: {busy}");
    let restore = async { client.restore_snapshot(&name, "s").await?.wait(Some(T)).await }.await;
    let restore = restore.expect_err("a restore while a stop holds the instance");
    ensure!(restore.busy_with() == Some("stop"), "restore: {restore}");
    let impatient = client.when_idle(&name, Duration::from_secs(1), update).await.expect_err("1 s is too short");
    ensure!(impatient.is_busy(), "when patience runs out, the busy error comes back: {impatient}");
    client.when_idle(&name, Duration::from_secs(120), update).await.context("update once the stop gave up")?;
    ensure!(client.instance(&name).await?.value.description == "changed while busy");
    ensure!(client.instance_state(&name).await?.status == "Running");
    ensure!(client.wait_for_operations_on(&name, Duration::from_secs(1)).await?, "something still holds {name}");
    // The stop has ended by now (failed: its timeout passed); LXD may have forgotten it already.
    drop(stop);
    remove(&client, &name).await
}

async fn profiles_volumes_networks(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    let name = unique_name("prof");
    client
        .create_profile(&Profile {
            name: name.clone(),
            description: "test".into(),
            config: ConfigMap::from([("limits.cpu".into(), "1".into())]),
            ..Profile::default()
        })
        .await?;
    let read = client.profile(&name).await?;
    ensure!(read.value.config.get("limits.cpu").map(String::as_str) == Some("1"));
    let mut changed = read.value.clone();
    changed.config.insert("limits.cpu".into(), "2".into());
    client.update_profile(&changed, read.etag.as_deref()).await?;
    ensure!(client.profile(&name).await?.value.config.get("limits.cpu").map(String::as_str) == Some("2"));
    ensure!(client.profiles().await?.iter().any(|p| p.name == name));
    client.delete_profile(&name).await?;
    ensure!(client.profile(&name).await.expect_err("deleted").is_not_found());

    let volume = unique_name("vol");
    client
        .create_custom_volume(
            POOL,
            &StorageVolume {
                name: volume.clone(),
                config: ConfigMap::from([("size".into(), "64MiB".into())]),
                ..StorageVolume::default()
            },
        )
        .await?;
    ensure!(client.custom_volume(POOL, &volume).await?.kind == "custom");
    ensure!(client.storage_volumes(POOL).await?.iter().any(|v| v.name == volume));
    let duplicate = client
        .create_custom_volume(POOL, &StorageVolume { name: volume.clone(), ..StorageVolume::default() })
        .await
        .expect_err("duplicate volume");
    ensure!(
        duplicate.is_conflict() || duplicate.status() == Some(400) || duplicate.status() == Some(500),
        "{duplicate}"
    );
    client.delete_custom_volume(POOL, &volume).await?;

    let pool = client.storage_pool(POOL).await?;
    ensure!(pool.driver == "btrfs", "pool driver {}", pool.driver);
    let bridge = client.network(&lxd.bridge).await?;
    ensure!(bridge.managed && bridge.kind == "bridge");
    ensure!(bridge.config.get("ipv4.address") == Some(&format!("{}.1/24", lxd.subnet)));
    ensure!(client.networks().await?.iter().any(|n| n.name == lxd.bridge));
    Ok(())
}

/// LXD 5.0.2 reads the first bytes of each new connection inside its accept loop (to spot
/// STARTTLS), so one connection that is open but has sent nothing holds up every other
/// client's new connection. A pooling HTTP client leaves such connections behind when it
/// races a fresh connect against a pooled one; ours must not, or LXD stops answering new
/// connections (execs first: each needs new websockets) until they time out.
async fn the_client_never_leaves_a_silent_connection(lxd: &'static PrivateLxd) -> Result<()> {
    let client = lxd.client();
    for _round in 0..4 {
        // Requests arriving while others finish: the pattern in which a pooled connection
        // frees up while a new one is still connecting (one round in three or four left a
        // silent connection with the old idle pool).
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let client = client.clone();
            burst.spawn(async move { client.instance_names().await });
            tokio::time::sleep(Duration::from_micros(300 * (i % 7))).await;
        }
        while let Some(result) = burst.join_next().await {
            result??;
        }
        new_connection_is_served(lxd).await?;
    }
    Ok(())
}

/// A liveness bound, far above any normal answer and far below the idle timeout that used to
/// end such stalls: a new connection must be served.
async fn new_connection_is_served(lxd: &PrivateLxd) -> Result<()> {
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::UnixStream::connect(lxd.socket()).await?;
        raw.write_all(b"GET /1.0 HTTP/1.1\r\nHost: lxd\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    })
    .await;
    let answer = answered.context("LXD did not accept a new connection: a silent one holds its accept loop")??;
    ensure!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    Ok(())
}

ssp_testkit::lxd_tests![
    the_client_never_leaves_a_silent_connection,
    server_and_resources,
    container_lifecycle,
    exec_pty_resize_and_signals,
    events_stream_lifecycle,
    update_with_etag,
    errors_carry_the_daemon_message,
    operation_wait_times_out,
    a_busy_instance_is_waited_for,
    profiles_volumes_networks,
];
