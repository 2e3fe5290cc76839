//! Storage end to end: the real `ssp serve` and CLI on a private real LXD — shares (who
//! owns what, read-only, no setuid or device files), persistent homes, snapshots (restore
//! keeps ssp's own config; schedules and retention), and a departing user removed with their
//! containers and home volume (exported first), also across a daemon killed mid-way.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ssp_testkit::e2e::{cli, root};
use ssp_testkit::{Platform, PrivateLxd};

/// The share identity block the host set-up delegates (scripts/lib/host.sh).
const SHARE_BASE: u64 = 1_001_000_000;
const SHARE_COUNT: u64 = 65_535;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output, what: &str) -> Result<String> {
    ensure!(
        output.status.success(),
        "{what} failed ({:?}): {}{}",
        output.status.code(),
        text(&output.stderr),
        text(&output.stdout)
    );
    Ok(text(&output.stdout))
}

async fn platform(lxd: &'static PrivateLxd) -> Result<Platform> {
    // Schedules run when the test asks (`ssp snapshot run`), not on the worker's timer.
    Platform::start_async_with(
        PathBuf::from(env!("CARGO_BIN_EXE_ssp")),
        lxd,
        "busybox",
        "[storage]\ninterval_secs = 3600\n",
    )
    .await
}

/// This binary's tests run one at a time: with LXD 5.0.2 here, when two platforms' first
/// containers with raw idmaps started (and had their file systems remapped) at once, exec
/// streams into both hung for minutes (seen in 3 runs of 3; one at a time, never).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a test body; when it fails, the daemon's log is added to the error.
async fn logged<F, Fut>(lxd: &'static PrivateLxd, body: F) -> Result<()>
where
    F: FnOnce(Platform) -> Fut,
    Fut: std::future::Future<Output = Result<Platform, (Platform, anyhow::Error)>>,
{
    let _one = ONE_AT_A_TIME.lock().await;
    match body(platform(lxd).await?).await {
        Ok(_) => Ok(()),
        Err((platform, e)) => Err(platform.explain(e)),
    }
}

/// Runs `sh -c script` in `container` as its owner (or root), returning stdout.
async fn sh(platform: &Platform, config: &Path, container: &str, as_root: bool, script: &str) -> Result<Output> {
    let mut args = vec!["exec", container];
    if as_root {
        args.push("--root");
    }
    args.extend(["--", "sh", "-c", script]);
    cli(platform, config, &args).await
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The LXD instance of `owner/name` on this platform.
async fn instance(platform: &Platform, lxd: &PrivateLxd, owner: &str, name: &str) -> Result<ssp_lxd::wire::Instance> {
    platform
        .lxd_instances(lxd)
        .await?
        .into_iter()
        .find(|i| {
            i.config.get("user.ssp.owner").map(String::as_str) == Some(owner)
                && i.config.get("user.ssp.name").map(String::as_str) == Some(name)
        })
        .with_context(|| format!("no LXD instance for {owner}/{name}"))
}

/// Creates a container and waits until its owner's account answers.
async fn container(platform: &Platform, config: &Path, name: &str) -> Result<()> {
    ok(cli(platform, config, &["container", "create", name]).await?, &format!("create {name}"))?;
    eventually(&format!("{name} answers as its owner"), Duration::from_secs(120), || async {
        let out = sh(platform, config, name, false, "id -u").await?;
        Ok(out.status.success() && text(&out.stdout).trim() == "1000")
    })
    .await
}

/// A folder on the host for a share, outside the private LXD's folder (which may not be
/// shared), removed when dropped.
fn host_folder(prefix: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(&format!("ssp-share-{prefix}-")).tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

/// Isolated ranges (the part mapping container root) never overlap the share id block.
fn check_isolated_ranges(instance: &ssp_lxd::wire::Instance) -> Result<()> {
    let map = instance.config.get("volatile.idmap.current").context("no volatile.idmap.current")?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(map)?;
    for entry in entries {
        let host = entry["Hostid"].as_u64().context("Hostid")?;
        let size = entry["Maprange"].as_u64().context("Maprange")?;
        let inside = entry["Nsid"].as_u64().context("Nsid")?;
        // The owner's identity (1000) and share groups (60001-64999 inside) come from the block.
        if size == 1 && (inside == 1000 || (60_001..65_000).contains(&inside)) {
            ensure!((SHARE_BASE..SHARE_BASE + SHARE_COUNT).contains(&host), "raw id {host} outside the block");
            continue;
        }
        ensure!(
            host + size <= SHARE_BASE || host >= SHARE_BASE + SHARE_COUNT,
            "{}: isolated range {host}+{size} overlaps the share id block",
            instance.name
        );
    }
    Ok(())
}

async fn shares_have_sensible_owners_are_read_only_and_never_setuid(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |platform| async move {
        match shares_have_sensible_owners_are_read_only_and_never_setuid_body(lxd, &platform).await {
            Ok(()) => Ok(platform),
            Err(e) => Err((platform, e)),
        }
    })
    .await
}

async fn shares_have_sensible_owners_are_read_only_and_never_setuid_body(
    lxd: &'static PrivateLxd,
    platform: &Platform,
) -> Result<()> {
    let alice = platform.user("alice", &[])?;
    let bob = platform.user("bob", &[])?;
    let data = host_folder("data")?;
    let lab = host_folder("lab")?;
    std::fs::write(data.path().join("README"), "datasets\n")?;
    let data_path = data.path().to_str().context("path")?;
    let lab_path = lab.path().to_str().context("path")?;

    // Bad input and non-admins are refused before anything is mounted.
    for (args, code) in [
        (vec!["share", "add", "etc", "/etc", "--ro"], 2),
        (vec!["share", "add", "root", "/", "--ro"], 2),
        (vec!["share", "add", "nope", "/no/such/folder", "--ro"], 2),
        (vec!["share", "add", "bad", data_path, "--ro", "--path", "/etc/x"], 2),
        (vec!["share", "add", "Bad", data_path, "--ro"], 2),
    ] {
        let out = root(platform, &args).await?;
        ensure!(out.status.code() == Some(code), "{args:?}: exit {:?} {}", out.status.code(), text(&out.stderr));
    }
    let state_dir = platform.dir().join("state");
    let inside_state = root(platform, &["share", "add", "state", state_dir.to_str().context("path")?, "--ro"]).await?;
    ensure!(inside_state.status.code() == Some(2), "sharing ssp's state: {}", text(&inside_state.stderr));
    let by_user = cli(platform, &alice, &["share", "add", "mine", data_path, "--rw"]).await?;
    ensure!(by_user.status.code() == Some(5), "a user shares a folder: exit {:?}", by_user.status.code());

    ok(root(platform, &["share", "add", "data", data_path, "--ro"]).await?, "share data")?;
    ok(root(platform, &["share", "add", "lab", lab_path, "--rw", "--users", "alice"]).await?, "share lab")?;
    let listed = ok(root(platform, &["share", "list"]).await?, "share list")?;
    ensure!(listed.contains("/shares/lab") && listed.contains("everyone"), "{listed}");
    // A user sees the shares that reach their containers, without the host folders.
    let seen: serde_json::Value =
        serde_json::from_str(&ok(cli(platform, &alice, &["--json", "share", "list"]).await?, "alice's shares")?)?;
    let names: Vec<&str> = seen.as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    ensure!(names == ["data", "lab"], "alice sees {names:?}");
    ensure!(!seen.to_string().contains(data_path) && !seen.to_string().contains(lab_path), "host folders: {seen}");
    let seen = ok(cli(platform, &bob, &["--json", "share", "list"]).await?, "bob's shares")?;
    ensure!(seen.contains("\"data\"") && !seen.contains("\"lab\""), "bob sees alice's share: {seen}");

    container(platform, &alice, "one").await?;
    container(platform, &alice, "two").await?;
    container(platform, &bob, "box").await?;

    // Written by alice in one container: alice's in the other, her stable id on the host.
    ok(sh(platform, &alice, "one", false, "echo hello > /shares/lab/from-one").await?, "write in one")?;
    let owner = ok(sh(platform, &alice, "two", false, "ls -ln /shares/lab/from-one").await?, "ls in two")?;
    ensure!(owner.split_whitespace().nth(2) == Some("1000"), "in two: {owner}");
    ensure!(ok(sh(platform, &alice, "two", false, "cat /shares/lab/from-one").await?, "cat")?.trim() == "hello");
    use std::os::unix::fs::MetadataExt;
    let host_uid = u64::from(std::fs::metadata(lab.path().join("from-one"))?.uid());
    ensure!((SHARE_BASE..SHARE_BASE + SHARE_COUNT).contains(&host_uid), "on the host: uid {host_uid}");
    // Bob does not get the lab; the data share is his too, readable, owned by nobody (host root).
    let no_lab = sh(platform, &bob, "box", false, "test -e /shares/lab").await?;
    ensure!(!no_lab.status.success(), "bob sees alice's lab share");
    ensure!(ok(sh(platform, &bob, "box", false, "cat /shares/data/README").await?, "bob reads")?.trim() == "datasets");
    let data_owner = ok(sh(platform, &bob, "box", false, "ls -ln /shares/data/README").await?, "ls data")?;
    ensure!(data_owner.split_whitespace().nth(2) == Some("65534"), "host root's file shows as {data_owner}");

    // Read-only is read-only, even for root inside.
    let write = sh(platform, &alice, "one", true, "echo x > /shares/data/new").await?;
    ensure!(!write.status.success(), "root wrote to a read-only share");
    ensure!(!data.path().join("new").exists());
    let mounts = ok(sh(platform, &alice, "one", false, "cat /proc/self/mountinfo").await?, "mountinfo")?;
    let line = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/shares/data")).context("no /shares/data mount")?;
    let options = line.split(' ').nth(5).unwrap_or_default();
    ensure!(options.split(',').any(|o| o == "ro"), "{line}");
    ensure!(options.split(',').any(|o| o == "nosuid") && options.split(',').any(|o| o == "nodev"), "{line}");
    let remount =
        sh(platform, &alice, "one", true, "mount -o remount,rw /shares/data && echo x > /shares/data/new").await?;
    ensure!(!remount.status.success() && !data.path().join("new").exists(), "root inside remounted the share writable");

    // A setuid binary owned by container two's root, planted in the writable share, gives
    // alice nothing there; a device node planted on the host cannot be opened.
    let two = instance(platform, lxd, "alice", "two").await?;
    let root_of_two: u32 = two.config.get("volatile.idmap.base").context("idmap base")?.parse()?;
    let probe = lab.path().join("euid");
    let source = platform.dir().join("euid.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n",
    )?;
    let built = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&probe)
        .arg(&source)
        .output()
        .context("running cc (scripts/test installs gcc and libc6-dev)")?;
    ensure!(built.status.success(), "cc: {}", text(&built.stderr));
    std::os::unix::fs::chown(&probe, Some(root_of_two), Some(root_of_two))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o4755))?;
    }
    let euid = ok(sh(platform, &alice, "two", false, "/shares/lab/euid").await?, "run the setuid probe")?;
    ensure!(euid.trim() == "1000", "a setuid binary on a share ran as {euid:?}");
    let made = std::process::Command::new("mknod").arg(lab.path().join("null")).args(["c", "1", "3"]).status()?;
    ensure!(made.success(), "mknod");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(lab.path().join("null"), std::fs::Permissions::from_mode(0o666))?;
    }
    let device = sh(platform, &alice, "two", true, "echo x > /shares/lab/null").await?;
    ensure!(!device.status.success(), "a device node on a share opened: {}", text(&device.stdout));

    for (owner, name) in [("alice", "one"), ("alice", "two"), ("bob", "box")] {
        check_isolated_ranges(&instance(platform, lxd, owner, name).await?)?;
    }

    // Removing a share unmounts it everywhere.
    ok(root(platform, &["share", "remove", "lab"]).await?, "share remove")?;
    eventually("lab unmounted", Duration::from_secs(60), || async {
        let one = instance(platform, lxd, "alice", "one").await?;
        Ok(!one.devices.contains_key("share-lab"))
    })
    .await?;
    let gone = sh(platform, &alice, "one", false, "test -e /shares/lab/from-one").await?;
    ensure!(!gone.status.success(), "the removed share is still mounted");
    for name in ["one", "two"] {
        ok(cli(platform, &alice, &["container", "delete", name]).await?, "delete")?;
    }
    ok(cli(platform, &bob, &["container", "delete", "box"]).await?, "delete box")?;
    ok(root(platform, &["share", "remove", "data"]).await?, "share remove data")?;
    Ok(())
}

async fn read_write_shares_are_writable_by_all_their_users(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |platform| async move {
        match read_write_shares_are_writable_by_all_their_users_body(lxd, &platform).await {
            Ok(()) => Ok(platform),
            Err(e) => Err((platform, e)),
        }
    })
    .await
}

/// A fresh root-owned folder, mode 755, as an admin's `mkdir` makes it.
fn root_owned_folder(prefix: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(&format!("ssp-share-{prefix}-")).tempdir_in("/tmp")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::chown(dir.path(), Some(0), Some(0))?;
    Ok(dir)
}

async fn read_write_shares_are_writable_by_all_their_users_body(
    lxd: &'static PrivateLxd,
    platform: &Platform,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let alice = platform.user("alice", &[])?;
    let bob = platform.user("bob", &[])?;
    let carol = platform.user("carol", &[])?;
    let team = root_owned_folder("team")?;
    let docs = root_owned_folder("docs")?;
    std::fs::write(docs.path().join("README"), "read me\n")?;
    let team_path = team.path().to_str().context("path")?;
    let docs_path = docs.path().to_str().context("path")?;

    // Adding says what it changed on the host folder, and did it.
    let added =
        ok(root(platform, &["share", "add", "team", team_path, "--rw", "--users", "alice,bob"]).await?, "share team")?;
    ensure!(added.contains("share_team") && added.contains("set mode 2775 (was 755)"), "{added}");
    let folder = std::fs::metadata(team.path())?;
    let gid = u64::from(folder.gid());
    ensure!((SHARE_BASE + 60_001..SHARE_BASE + 65_000).contains(&gid), "host folder group {gid}");
    ensure!(folder.mode() & 0o7777 == 0o2775 && folder.uid() == 0, "mode {:o}", folder.mode());
    let acl = std::process::Command::new("getfacl").args(["-n", "-p", team_path]).output()?;
    let acl = text(&acl.stdout);
    ensure!(acl.contains(&format!("default:group:{gid}:rwx")) && acl.contains("default:mask::rwx"), "{acl}");
    ensure!(acl.contains(&format!("\ngroup:{gid}:rwx")), "{acl}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(root(platform, &["--json", "share", "list"]).await?, "share list")?)?;
    let listed = json.as_array().context("a list")?.iter().find(|s| s["name"] == "team").context("team listed")?;
    ensure!(listed["group"]["gid"] == gid && listed["group"]["name"] == "share_team", "{listed}");
    // A read-only share's folder is not touched.
    let ro = ok(root(platform, &["share", "add", "docs", docs_path, "--ro"]).await?, "share docs")?;
    ensure!(!ro.contains("set group"), "{ro}");
    ensure!(std::fs::metadata(docs.path())?.mode() & 0o7777 == 0o755 && std::fs::metadata(docs.path())?.gid() == 0);

    // Containers made after the share have its group mapped from the start.
    container(platform, &alice, "a").await?;
    container(platform, &bob, "b").await?;
    container(platform, &carol, "c").await?;
    let a = instance(platform, lxd, "alice", "a").await?;
    let map = a.config.get("raw.idmap").context("raw.idmap")?;
    ensure!(map.lines().any(|l| l == format!("gid {gid} {}", gid - SHARE_BASE)), "{map}");

    // The share's root shows its group by name (busybox's `ls` cuts names to 8 characters).
    let root_dir =
        ok(sh(platform, &alice, "a", false, "ls -ld /shares/team; stat -c %G /shares/team; id -Gn").await?, "ls -ld")?;
    let lines: Vec<&str> = root_dir.lines().collect();
    let listed = lines.first().and_then(|l| l.split_whitespace().nth(3)).unwrap_or_default();
    ensure!(listed.len() >= 8 && "share_team".starts_with(listed), "{root_dir}");
    ensure!(lines.get(1) == Some(&"share_team") && lines.get(2) == Some(&"alice share_team"), "{root_dir}");
    // Alice makes a file and a folder; Bob changes her file and writes into her folder;
    // Alice changes Bob's file — whatever their umask.
    ok(
        sh(
            platform,
            &alice,
            "a",
            false,
            "umask 077; echo a > /shares/team/notes; mkdir /shares/team/sub; echo a > /shares/team/sub/one",
        )
        .await?,
        "alice writes",
    )?;
    ok(
        sh(
            platform,
            &bob,
            "b",
            false,
            "umask 077; echo b >> /shares/team/notes; echo b > /shares/team/sub/two; echo b > /shares/team/bobs",
        )
        .await?,
        "bob changes alice's",
    )?;
    ok(
        sh(platform, &alice, "a", false, "echo a >> /shares/team/bobs; rm /shares/team/sub/two").await?,
        "alice changes bob's",
    )?;
    let notes = ok(sh(platform, &bob, "b", false, "cat /shares/team/notes /shares/team/bobs").await?, "read")?;
    ensure!(notes == "a\nb\nb\na\n", "{notes:?}");
    ensure!(!team.path().join("sub/two").exists());
    for file in ["notes", "sub", "sub/one", "bobs"] {
        let meta = std::fs::metadata(team.path().join(file))?;
        ensure!(u64::from(meta.gid()) == gid, "{file} has gid {}", meta.gid());
        ensure!(meta.mode() & 0o4000 == 0, "{file} is setuid");
    }

    // Carol is not on the list: no device, no folder.
    let c = instance(platform, lxd, "carol", "c").await?;
    ensure!(!c.devices.contains_key("share-team") && c.devices.contains_key("share-docs"), "{:?}", c.devices);
    ensure!(!c.config.get("raw.idmap").is_some_and(|m| m.contains(&gid.to_string())), "{:?}", c.config);
    ensure!(!sh(platform, &carol, "c", true, "test -e /shares/team").await?.status.success(), "carol sees team");
    // The read-only share stays read-only, for the owner and for root inside.
    for as_root in [false, true] {
        let write = sh(platform, &alice, "a", as_root, "echo x > /shares/docs/new").await?;
        ensure!(!write.status.success(), "wrote to a read-only share (root: {as_root})");
    }
    ensure!(!docs.path().join("new").exists());

    for (user, name) in [(&alice, "a"), (&bob, "b"), (&carol, "c")] {
        ok(cli(platform, user, &["container", "delete", name]).await?, "delete")?;
    }
    ok(root(platform, &["share", "remove", "team"]).await?, "remove team")?;
    ok(root(platform, &["share", "remove", "docs"]).await?, "remove docs")?;
    // Removing a share leaves the host folder's group and ACLs as they are.
    ensure!(u64::from(std::fs::metadata(team.path())?.gid()) == gid);
    Ok(())
}

async fn snapshots_restore_keeps_managed_config_and_retention_prunes(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |platform| async move {
        match snapshots_restore_keeps_managed_config_and_retention_prunes_body(lxd, &platform).await {
            Ok(()) => Ok(platform),
            Err(e) => Err((platform, e)),
        }
    })
    .await
}

async fn snapshots_restore_keeps_managed_config_and_retention_prunes_body(
    lxd: &'static PrivateLxd,
    platform: &Platform,
) -> Result<()> {
    let alice = platform.user("alice", &[])?;
    let lab = host_folder("snap")?;
    let late = host_folder("late")?;
    ok(root(platform, &["share", "add", "lab", lab.path().to_str().context("path")?, "--rw"]).await?, "share")?;
    container(platform, &alice, "dev").await?;
    ok(sh(platform, &alice, "dev", true, "echo one > /root/state").await?, "write one")?;
    ok(cli(platform, &alice, &["snapshot", "create", "dev@before"]).await?, "snapshot")?;
    ok(sh(platform, &alice, "dev", true, "echo two > /root/state").await?, "write two")?;
    // A share that arrives after the snapshot: the snapshot's devices do not have it.
    ok(root(platform, &["share", "add", "late", late.path().to_str().context("path")?, "--ro"]).await?, "late")?;
    eventually("late share attached", Duration::from_secs(60), || async {
        Ok(instance(platform, lxd, "alice", "dev").await?.devices.contains_key("share-late"))
    })
    .await?;
    let bad = cli(platform, &alice, &["snapshot", "create", "dev@auto-x"]).await?;
    ensure!(bad.status.code() == Some(2), "a person took an auto- name: {:?}", bad.status.code());
    let bob = platform.user("bob", &[])?;
    let foreign = cli(platform, &bob, &["snapshot", "list", "alice/dev"]).await?;
    ensure!(foreign.status.code() == Some(4), "bob lists alice's snapshots: {:?}", foreign.status.code());

    ok(cli(platform, &alice, &["snapshot", "restore", "dev@before"]).await?, "restore")?;
    let after = instance(platform, lxd, "alice", "dev").await?;
    ensure!(after.status == "Running", "after restore: {}", after.status);
    ensure!(after.devices.contains_key("share-lab") && after.devices.contains_key("share-late"), "{:?}", after.devices);
    let map = after.config.get("raw.idmap").context("no raw.idmap after the restore")?;
    ensure!(map.lines().next().is_some_and(|m| m.ends_with(" 1000")) && map.contains("\ngid "), "{map:?}");
    ensure!(after.config["security.privileged"] == "false");
    let state = ok(sh(platform, &alice, "dev", true, "cat /root/state").await?, "read state")?;
    ensure!(state.trim() == "one", "the change survived the restore: {state:?}");
    ok(sh(platform, &alice, "dev", false, "test -d /shares/late && echo hi > /shares/lab/after").await?, "shares")?;

    // Retention: unprotected snapshots are pruned by the schedule's policy, protected kept.
    for name in ["dev@s1", "dev@s2"] {
        ok(cli(platform, &alice, &["snapshot", "create", name, "--unprotected"]).await?, "unprotected")?;
    }
    // Snapshots of the same second are ordered by name (retention is deterministic): let
    // the clock tick so the scheduled one is the newest.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() <= second {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = cli(platform, &alice, &["snapshot", "schedule", "dev", "--every", "1h"]).await?;
    ensure!(bad.status.code() == Some(2), "a policy keeping nothing: {:?}", bad.status.code());
    ok(
        cli(platform, &alice, &["snapshot", "schedule", "dev", "--every", "1h", "--keep-last", "1"]).await?,
        "schedule",
    )?;
    let not_admin = cli(platform, &alice, &["snapshot", "run"]).await?;
    ensure!(not_admin.status.code() == Some(5), "a user ran the scheduler");
    let report: serde_json::Value =
        serde_json::from_str(&ok(root(platform, &["--json", "snapshot", "run"]).await?, "run")?)?;
    ensure!(report["taken"] == 1 && report["pruned"] == 2 && report["failed"] == 0, "{report}");
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(cli(platform, &alice, &["--json", "snapshot", "list", "dev"]).await?, "list")?)?;
    let names: Vec<&str> = listed.iter().filter_map(|s| s["name"].as_str()).collect();
    ensure!(names.len() == 2 && names.contains(&"before"), "{names:?}");
    ensure!(names.iter().any(|n| n.starts_with("auto-")), "{names:?}");
    let again: serde_json::Value =
        serde_json::from_str(&ok(root(platform, &["--json", "snapshot", "run"]).await?, "run")?)?;
    ensure!(again["taken"] == 0 && again["pruned"] == 0, "not due yet, nothing to prune: {again}");
    ok(cli(platform, &alice, &["snapshot", "delete", "dev@before"]).await?, "delete snapshot")?;
    ensure!(lxd.client().snapshots(&after.name).await?.len() == 1);
    ok(cli(platform, &alice, &["container", "delete", "dev"]).await?, "delete")?;
    ok(root(platform, &["share", "remove", "lab"]).await?, "remove lab")?;
    ok(root(platform, &["share", "remove", "late"]).await?, "remove late")?;
    Ok(())
}

async fn a_home_volume_outlives_its_containers(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |platform| async move {
        match a_home_volume_outlives_its_containers_body(lxd, &platform).await {
            Ok(()) => Ok(platform),
            Err(e) => Err((platform, e)),
        }
    })
    .await
}

async fn a_home_volume_outlives_its_containers_body(lxd: &'static PrivateLxd, platform: &Platform) -> Result<()> {
    let carol = platform.user("carol", &["--max-disk", "3GiB"])?;
    let too_big = cli(platform, &carol, &["home", "create", "--size", "4GiB"]).await?;
    ensure!(too_big.status.code() == Some(6), "over the disk quota: {:?}", too_big.status.code());
    ok(cli(platform, &carol, &["home", "create", "--size", "1GiB"]).await?, "home create")?;
    // 1 GiB home + 1 GiB root disk, then a second 1 GiB container, then no more.
    container(platform, &carol, "first").await?;
    ok(sh(platform, &carol, "first", false, "echo kept > /home/carol/notes").await?, "write home")?;
    // 8 MiB written shows in the home's use (btrfs quotas count it once it is synced).
    ok(sh(platform, &carol, "first", false, "head -c 8388608 /dev/zero > /home/carol/blob; sync").await?, "fill")?;
    eventually("the home's use counts what was written", Duration::from_secs(60), || async {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(cli(platform, &carol, &["--json", "home", "show"]).await?, "home show")?)?;
        let used = shown["used"].as_str().map(ssp_core::size::ByteSize::parse).transpose()?;
        Ok(used.is_some_and(|used| used.bytes() >= 8 << 20 && used.bytes() < 1 << 30))
    })
    .await?;
    ok(sh(platform, &carol, "first", false, "rm /home/carol/blob").await?, "unfill")?;
    let over = cli(platform, &carol, &["container", "create", "big", "--disk", "2GiB", "--no-wait"]).await?;
    ensure!(over.status.code() == Some(6), "the home does not count against the quota");
    ok(cli(platform, &carol, &["container", "delete", "first"]).await?, "delete first")?;
    container(platform, &carol, "second").await?;
    let notes =
        ok(sh(platform, &carol, "second", false, "cat /home/carol/notes; ls -ln /home/carol/notes").await?, "read")?;
    ensure!(notes.starts_with("kept\n"), "{notes}");
    ensure!(notes.lines().nth(1).and_then(|l| l.split_whitespace().nth(2)) == Some("1000"), "{notes}");
    ok(cli(platform, &carol, &["container", "delete", "second"]).await?, "delete second")?;
    ok(cli(platform, &carol, &["home", "delete"]).await?, "home delete")?;
    eventually("home volume removed", Duration::from_secs(60), || async {
        let out = cli(platform, &carol, &["home", "show"]).await?;
        Ok(out.status.code() == Some(4))
    })
    .await?;
    let volumes = lxd.client().storage_volumes(ssp_testkit::daemon::POOL).await?;
    ensure!(!volumes.iter().any(|v| v.kind == "custom"), "a custom volume is left");

    // A home made while a container runs: its files' owner is not in the running id map
    // (root inside could not even make .ssh there), so it is mounted at the next start; the
    // container stays usable and says so. After a restart it is there, and the account was
    // set up again in it (authorized_keys).
    let gina = platform.user("gina", &[])?;
    container(platform, &gina, "run").await?;
    ok(sh(platform, &gina, "run", false, "echo before > /home/gina/rootfs-file").await?, "write before")?;
    ok(cli(platform, &gina, &["home", "create", "--size", "1GiB"]).await?, "gina's home")?;
    eventually("the running container says its home waits for a restart", Duration::from_secs(60), || async {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(cli(platform, &gina, &["--json", "container", "show", "run"]).await?, "show")?)?;
        Ok(shown["converged"] == true
            && shown.get("problem").is_none()
            && shown["pending"].as_str().is_some_and(|p| p.contains("/home/gina") && p.contains("restart")))
    })
    .await?;
    let before = ok(sh(platform, &gina, "run", false, "cat /home/gina/rootfs-file").await?, "still its own")?;
    ensure!(before.trim() == "before", "the home was mounted over a running container: {before}");
    ok(cli(platform, &gina, &["container", "restart", "run"]).await?, "restart run")?;
    let after = ok(
        sh(platform, &gina, "run", false, "echo mine > /home/gina/notes && ls -ln /home/gina/notes; ls -a /home/gina")
            .await?,
        "in the home",
    )?;
    ensure!(after.lines().next().and_then(|l| l.split_whitespace().nth(2)) == Some("1000"), "{after}");
    ensure!(!after.contains("rootfs-file") && after.contains(".ssh"), "not the home volume: {after}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(cli(platform, &gina, &["--json", "container", "show", "run"]).await?, "show")?)?;
    ensure!(shown.get("pending").is_none() && shown["converged"] == true, "{shown}");
    Ok(())
}

async fn a_departing_user_goes_with_everything_they_held(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |platform| async move {
        match a_departing_user_goes_with_everything_they_held_body(lxd, &platform).await {
            Ok(()) => Ok(platform),
            Err(e) => Err((platform, e)),
        }
    })
    .await
}

/// A gzip file whose tar listing is not empty; returns the listing.
fn tarball(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.starts_with(&[0x1f, 0x8b]), "{} is not gzip ({} bytes)", path.display(), bytes.len());
    let listing = ok(std::process::Command::new("tar").arg("-tzf").arg(path).output()?, "tar -tzf")?;
    ensure!(!listing.trim().is_empty(), "{} holds nothing", path.display());
    Ok(listing)
}

/// This platform's home volumes in LXD.
async fn home_volumes(platform: &Platform, lxd: &PrivateLxd) -> Result<Vec<String>> {
    let id = platform.id()?;
    let prefix = format!("ssp-{}-home-", &id[..id.len().min(16)]);
    let volumes = lxd.client().storage_volumes(ssp_testkit::daemon::POOL).await?;
    Ok(volumes.into_iter().filter(|v| v.kind == "custom" && v.name.starts_with(&prefix)).map(|v| v.name).collect())
}

async fn a_departing_user_goes_with_everything_they_held_body(
    lxd: &'static PrivateLxd,
    platform: &Platform,
) -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("dana");
    let made =
        std::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output();
    ok(made.context("running ssh-keygen (openssh-client)")?, "ssh-keygen")?;
    let public = format!("{}.pub", key.display());
    let dana = platform.user("dana", &["--key", &public, "--max-disk", "4GiB"])?;
    let token = platform.token("dana")?;
    ok(cli(platform, &dana, &["home", "create", "--size", "1GiB"]).await?, "home create")?;
    container(platform, &dana, "first").await?;
    ok(sh(platform, &dana, "first", false, "echo kept > /home/dana/notes").await?, "write home")?;
    ok(cli(platform, &dana, &["container", "create", "second"]).await?, "create second")?;
    ok(cli(platform, &dana, &["image", "publish", "second", "--as", "mine"]).await?, "publish")?;
    let alias = format!("ssp_{}_dana_mine", platform.id()?);
    ensure!(lxd.client().image_alias_names().await?.contains(&alias), "no {alias} in LXD");
    ensure!(home_volumes(platform, lxd).await?.len() == 1, "dana's home volume is not in LXD");

    let refused = root(platform, &["user", "remove", "dana"]).await?;
    ensure!(
        refused.status.code() == Some(6) && text(&refused.stderr).contains("--purge"),
        "a user with containers is refused, pointing at --purge: {:?} {}",
        refused.status.code(),
        text(&refused.stderr)
    );

    let exports = tempfile::tempdir()?;
    let dir = exports.path().join("dana");
    let started = Instant::now();
    let dir_arg = dir.to_str().context("path")?;
    let removed = root(platform, &["user", "remove", "dana", "--purge", "--export", dir_arg]).await?;
    let said = ok(removed.clone(), "user remove --purge --export")?;
    let progress = text(&removed.stderr);
    ensure!(said.contains("removed"), "{said}");
    ensure!(progress.contains("2 container(s) (first, second)") && progress.contains("home volume"), "{progress}");
    eprintln!("dana removed with exports in {:?}; the CLI said:\n{progress}{said}", started.elapsed());
    tarball(&dir.join("first.tar.gz"))?;
    tarball(&dir.join("second.tar.gz"))?;
    let home = tarball(&dir.join("home.tar.gz"))?;
    ensure!(home.contains("notes"), "the home archive lacks dana's file: {home}");

    let left: Vec<String> =
        platform.lxd_containers(lxd).await?.into_iter().filter(|c| c.starts_with("dana/")).collect();
    ensure!(left.is_empty(), "containers left in LXD: {left:?}");
    ensure!(home_volumes(platform, lxd).await?.is_empty(), "the home volume is left in LXD");
    ensure!(!lxd.client().image_alias_names().await?.contains(&alias), "dana's image is left in LXD");
    let shown = platform.request("GET", "/api/v1/users/dana", None, None).await?;
    ensure!(shown.status == 404, "dana is still there: {} {}", shown.status, shown.body);
    let with_token = platform.request("GET", "/api/v1/info", Some(&token), None).await?;
    ensure!(with_token.status == 401, "dana's token still works: {}", with_token.status);
    let audit = platform.request("GET", "/api/v1/audit?object=dana", None, None).await?;
    ensure!(audit.status == 200, "audit: {} {}", audit.status, audit.body);
    for action in ["\"user.purge\"", "\"user.remove\""] {
        ensure!(audit.body.contains(action), "no {action} in the audit log: {}", audit.body);
    }

    // A daemon killed right after it accepted a purge finishes it after its restart.
    let erin = platform.user("erin", &["--max-disk", "3GiB"])?;
    ok(cli(platform, &erin, &["home", "create", "--size", "1GiB"]).await?, "erin's home")?;
    ok(cli(platform, &erin, &["container", "create", "only"]).await?, "erin's container")?;
    let accepted = ok(root(platform, &["--json", "user", "remove", "erin", "--purge", "--no-wait"]).await?, "purge")?;
    let accepted: serde_json::Value = serde_json::from_str(&accepted).context("--json")?;
    ensure!(accepted["state"]["departing"] == true, "{accepted}");
    // While departing (her container's deletion takes LXD longer than these two calls):
    // she cannot be enabled again, and nothing new is made for her.
    let enable = root(platform, &["user", "enable", "erin"]).await?;
    ensure!(enable.status.code() == Some(6), "a departing user was enabled: {:?}", enable.status.code());
    let more = root(platform, &["container", "create", "erin/more", "--no-wait"]).await?;
    ensure!(
        more.status.code() == Some(6) && text(&more.stderr).contains("being removed"),
        "a container was made for a departing user: {:?} {}",
        more.status.code(),
        text(&more.stderr)
    );
    let at_kill = platform.request("GET", "/api/v1/users/erin", None, None).await?;
    platform.kill();
    eprintln!("erin at the kill: {} {}", at_kill.status, at_kill.body);
    platform.restart()?;
    eventually("erin removed after a restart", Duration::from_secs(120), || async {
        Ok(platform.request("GET", "/api/v1/users/erin", None, None).await?.status == 404)
    })
    .await?;
    let left: Vec<String> =
        platform.lxd_containers(lxd).await?.into_iter().filter(|c| c.starts_with("erin/")).collect();
    ensure!(left.is_empty(), "erin's containers left in LXD: {left:?}");
    ensure!(home_volumes(platform, lxd).await?.is_empty(), "erin's home volume is left in LXD");
    // A user with nothing to delete goes at once.
    platform.user("fay", &[])?;
    let gone = ok(root(platform, &["user", "remove", "fay", "--purge", "--no-wait"]).await?, "purge fay")?;
    ensure!(gone.contains("removed"), "{gone}");
    ensure!(platform.request("GET", "/api/v1/users/fay", None, None).await?.status == 404, "fay is still there");
    eprintln!("dana, erin and fay removed in {:?}", started.elapsed());
    Ok(())
}

ssp_testkit::lxd_tests![
    shares_have_sensible_owners_are_read_only_and_never_setuid,
    read_write_shares_are_writable_by_all_their_users,
    snapshots_restore_keeps_managed_config_and_retention_prunes,
    a_home_volume_outlives_its_containers,
    a_departing_user_goes_with_everything_they_held,
];
