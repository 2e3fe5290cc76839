//! Images and clones end to end: the real `ssp serve` and CLI on a private real LXD —
//! publishing a container as an image and creating from it (a copy-on-write clone on the
//! btrfs pool), who may see an image, copying a container, exporting and importing one
//! (with its snapshots; hostile archives refused before LXD sees them), and backing up and
//! restoring ssp's own state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ssp_testkit::e2e::{cli, eventually, ok, root, text, EXEC_PATIENCE};
use ssp_testkit::{Platform, PrivateLxd};

async fn platform(lxd: &'static PrivateLxd) -> Result<Platform> {
    Platform::start_async_with(PathBuf::from(env!("CARGO_BIN_EXE_ssp")), lxd, "busybox", "").await
}

/// One test at a time: each starts containers whose first boots remap file systems, and
/// LXD 5.0.2 here stalls execs when several do at once (see tests/storage.rs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a test body; when it fails, the daemon's log is added to the error.
async fn logged<F, Fut>(lxd: &'static PrivateLxd, body: F) -> Result<()>
where
    F: FnOnce(&'static PrivateLxd, Platform) -> Fut,
    Fut: std::future::Future<Output = (Platform, Result<()>)>,
{
    let _one = ONE_AT_A_TIME.lock().await;
    let (platform, outcome) = body(lxd, platform(lxd).await?).await;
    outcome.map_err(|e| platform.explain(e))
}

/// Runs `sh -c script` in `container` (as root), returning stdout; retried through LXD's
/// exec stalls.
async fn sh(platform: &Platform, config: &Path, container: &str, script: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + EXEC_PATIENCE;
    loop {
        let out = cli(platform, config, &["exec", container, "--root", "--", "sh", "-c", script]).await?;
        if out.status.success() {
            return Ok(text(&out.stdout));
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{script:?} in {container}: exit {:?}: {}{}",
            out.status.code(),
            text(&out.stderr),
            text(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates a container (with extra arguments) and waits until its owner's account answers.
async fn container(platform: &Platform, config: &Path, name: &str, extra: &[&str]) -> Result<()> {
    let mut args = vec!["container", "create", name];
    args.extend_from_slice(extra);
    ok(cli(platform, config, &args).await?, &format!("create {name}"))?;
    answers(platform, config, name).await
}

/// Waits until `name` runs its owner's account (uid 1000).
async fn answers(platform: &Platform, config: &Path, name: &str) -> Result<()> {
    eventually(&format!("{name} answers as its owner"), EXEC_PATIENCE, || async {
        let out = cli(platform, config, &["exec", name, "--", "id", "-u"]).await?;
        Ok(out.status.success() && text(&out.stdout).trim() == "1000")
    })
    .await
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

/// A field of `btrfs subvolume show PATH` (`UUID`, `Parent UUID`).
fn subvolume_field(path: &Path, field: &str) -> Result<String> {
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .context("running btrfs (btrfs-progs must be installed)")?;
    ensure!(out.status.success(), "btrfs subvolume show {}: {}", path.display(), text(&out.stderr));
    text(&out.stdout)
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .with_context(|| format!("no {field} in btrfs subvolume show {}", path.display()))
}

async fn publish_create_and_copy(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |lxd, platform| async move {
        let outcome = publish_create_and_copy_body(lxd, &platform).await;
        (platform, outcome)
    })
    .await
}

async fn publish_create_and_copy_body(lxd: &'static PrivateLxd, platform: &Platform) -> Result<()> {
    let alice = platform.user("alice", &[])?;
    let bob = platform.user("bob", &["--max-containers", "1"])?;
    container(platform, &alice, "dev", &[]).await?;
    sh(platform, &alice, "dev", "echo published > /etc/lab-marker").await?;

    // Publish (from a snapshot: dev keeps running) and find the image.
    ok(cli(platform, &alice, &["image", "publish", "dev", "--as", "lab-base"]).await?, "publish")?;
    ensure!(instance(platform, lxd, "alice", "dev").await?.status == "Running", "publishing stopped dev");
    let dev = instance(platform, lxd, "alice", "dev").await?;
    ensure!(lxd.client().snapshots(&dev.name).await?.is_empty(), "the publish snapshot was left behind");
    let again = cli(platform, &alice, &["image", "publish", "dev", "--as", "lab-base"]).await?;
    ensure!(again.status.code() == Some(6), "published twice under one name: {:?}", again.status.code());
    let bad = cli(platform, &alice, &["image", "publish", "dev", "--as", "Lab_Base"]).await?;
    ensure!(bad.status.code() == Some(2), "a bad image name: {:?}", bad.status.code());
    let public = cli(platform, &alice, &["image", "publish", "dev", "--as", "open", "--public"]).await?;
    ensure!(public.status.code() == Some(5), "a user published a public image: {:?}", public.status.code());
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(cli(platform, &alice, &["--json", "image", "list"]).await?, "list")?)?;
    let image = listed.iter().find(|i| i["name"] == "alice/lab-base").context("alice does not see her image")?;
    ensure!(!listed.iter().any(|i| i["name"].as_str().is_some_and(|n| n.starts_with("ssp_"))), "{listed:?}");
    let fingerprint = image["fingerprint"].as_str().context("fingerprint")?.to_string();

    // Bob neither sees nor uses it, and hears what a missing image would say.
    let bobs: Vec<serde_json::Value> =
        serde_json::from_str(&ok(cli(platform, &bob, &["--json", "image", "list"]).await?, "bob's list")?)?;
    ensure!(!bobs.iter().any(|i| i["name"] == "alice/lab-base"), "bob sees alice's image: {bobs:?}");
    let foreign = cli(platform, &bob, &["container", "create", "x", "--image", "alice/lab-base"]).await?;
    let missing = cli(platform, &bob, &["container", "create", "x", "--image", "alice/no-such"]).await?;
    ensure!(foreign.status.code() == Some(2) && missing.status.code() == Some(2), "{foreign:?} {missing:?}");
    ensure!(
        text(&foreign.stderr).replace("alice/lab-base", "IMAGE")
            == text(&missing.stderr).replace("alice/no-such", "IMAGE"),
        "another user's image answers unlike a missing one:\n{}\n{}",
        text(&foreign.stderr),
        text(&missing.stderr)
    );
    let by_name = cli(platform, &bob, &["container", "create", "x", "--image", "lab-base"]).await?;
    ensure!(by_name.status.code() == Some(2), "bob used alice's image by its bare name");

    // Alice's container from it has the published file and is a btrfs snapshot of the image.
    container(platform, &alice, "lab", &["--image", "lab-base"]).await?;
    let marker = sh(platform, &alice, "lab", "cat /etc/lab-marker").await?;
    ensure!(marker.trim() == "published", "{marker:?}");
    let lab = instance(platform, lxd, "alice", "lab").await?;
    let pool = lxd.dir().join("storage-pools").join(ssp_testkit::daemon::POOL);
    let parent = subvolume_field(&pool.join("containers").join(&lab.name), "Parent UUID")?;
    let image_volume = subvolume_field(&pool.join("images").join(&fingerprint), "UUID")?;
    ensure!(parent == image_volume, "lab is not a snapshot of the image volume: parent {parent}, image {image_volume}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(cli(platform, &alice, &["--json", "container", "show", "lab"]).await?, "show")?)?;
    ensure!(shown["image"] == "alice/lab-base", "{shown}");

    // An admin's public image: bob's container from it is bob's, not alice's.
    ok(root(platform, &["image", "publish", "alice/dev", "--as", "shared", "--public"]).await?, "publish public")?;
    container(platform, &bob, "mine", &["--image", "shared"]).await?;
    let who = ok(cli(platform, &bob, &["exec", "mine", "--", "id", "-un"]).await?, "id")?;
    ensure!(who.trim() == "bob", "bob's container runs as {who:?}");
    let passwd = sh(platform, &bob, "mine", "cat /etc/passwd; ls /etc/sudoers.d 2>/dev/null; true").await?;
    ensure!(!passwd.contains("alice"), "alice's account came along: {passwd}");
    ensure!(sh(platform, &bob, "mine", "cat /etc/lab-marker").await?.trim() == "published");

    // Copy: the files, ssp's own config, a new identity, no snapshots.
    ok(cli(platform, &alice, &["snapshot", "create", "dev@before-copy"]).await?, "snapshot")?;
    ok(cli(platform, &alice, &["container", "copy", "dev", "dev2"]).await?, "copy")?;
    answers(platform, &alice, "dev2").await?;
    ensure!(sh(platform, &alice, "dev2", "cat /etc/lab-marker").await?.trim() == "published");
    let copy = instance(platform, lxd, "alice", "dev2").await?;
    let source = instance(platform, lxd, "alice", "dev").await?;
    ensure!(copy.config["user.ssp.id"] != source.config["user.ssp.id"], "the copy kept its source's id");
    ensure!(copy.config["security.idmap.isolated"] == "true" && copy.config["security.privileged"] == "false");
    ensure!(copy.config["user.ssp.platform"] == platform.id()?);
    ensure!(lxd.client().snapshots(&copy.name).await?.is_empty(), "snapshots were copied");
    let over = root(platform, &["container", "copy", "alice/dev", "bob/second"]).await?;
    ensure!(over.status.code() == Some(6), "bob's container quota did not hold: {:?}", over.status.code());
    let not_admin = cli(platform, &alice, &["container", "copy", "dev", "bob/gift"]).await?;
    ensure!(not_admin.status.code() == Some(5), "alice copied to bob: {:?}", not_admin.status.code());

    // Images are deleted by their owner; a user owning one cannot be removed.
    let refused = root(platform, &["user", "remove", "alice"]).await?;
    ensure!(refused.status.code() == Some(6), "{:?}", refused.status.code());
    let bobs_try = cli(platform, &bob, &["image", "delete", "alice/lab-base"]).await?;
    ensure!(bobs_try.status.code() == Some(4), "bob deleted alice's image: {:?}", bobs_try.status.code());
    ok(cli(platform, &alice, &["image", "delete", "lab-base"]).await?, "delete image")?;
    ok(root(platform, &["image", "delete", "alice/shared"]).await?, "delete shared")?;
    ensure!(sh(platform, &alice, "lab", "cat /etc/lab-marker").await?.trim() == "published", "lab lost its files");

    // An image LXD published whose row a killed daemon never wrote is removed at the next start.
    let stray_property = format!("ssp.platform={}", platform.id()?);
    lxd.lxc(&["publish", &format!("{}/before-copy", dev.name), "--alias", "stray", &stray_property])?;
    platform.restart()?;
    ensure!(lxd.client().image_alias("stray").await.is_err(), "the unrecorded image is still there");
    // (The daemon listens on a new port now: the rest goes through its socket, as root.)
    for name in ["alice/dev", "alice/dev2", "alice/lab", "bob/mine"] {
        ok(root(platform, &["container", "delete", name]).await?, &format!("delete {name}"))?;
    }
    Ok(())
}

/// A tar archive with these entries, names written raw (as a hostile tool would).
fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).expect("appending to an in-memory archive");
    }
    builder.into_inner().expect("an in-memory archive")
}

async fn export_delete_import(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |lxd, platform| async move {
        let outcome = export_delete_import_body(lxd, &platform).await;
        (platform, outcome)
    })
    .await
}

async fn export_delete_import_body(lxd: &'static PrivateLxd, platform: &Platform) -> Result<()> {
    let carol = platform.user("carol", &[])?;
    let files = tempfile::tempdir()?;
    container(platform, &carol, "box", &[]).await?;
    sh(platform, &carol, "box", "echo first > /etc/box-marker").await?;
    ok(cli(platform, &carol, &["snapshot", "create", "box@first"]).await?, "snapshot")?;
    sh(platform, &carol, "box", "echo second > /etc/box-marker").await?;

    let file = files.path().join("box.tar.gz");
    let path = file.to_str().context("path")?;
    let denied = cli(platform, &carol, &["container", "export", "box", path]).await?;
    ensure!(denied.status.code() == Some(5), "a user exported: {:?}", denied.status.code());
    ensure!(!file.exists(), "a refused export left a file");
    ok(root(platform, &["container", "export", "carol/box", path]).await?, "export")?;
    ensure!(std::fs::metadata(&file)?.len() > 0, "an empty export");
    let box_name = instance(platform, lxd, "carol", "box").await?.name;
    ensure!(lxd.client().snapshots(&box_name).await?.len() == 1, "the export left a snapshot or took one");
    ok(cli(platform, &carol, &["container", "delete", "box"]).await?, "delete")?;

    let denied = cli(platform, &carol, &["container", "import", path, "carol/box"]).await?;
    ensure!(denied.status.code() == Some(5), "a user imported: {:?}", denied.status.code());
    ok(root(platform, &["container", "import", path, "carol/box", "--memory", "320MiB"]).await?, "import")?;
    answers(platform, &carol, "box").await?;
    ensure!(sh(platform, &carol, "box", "cat /etc/box-marker").await?.trim() == "second");
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(cli(platform, &carol, &["--json", "snapshot", "list", "box"]).await?, "list")?)?;
    ensure!(listed.iter().any(|s| s["name"] == "first"), "the snapshot did not come back: {listed:?}");
    let back = instance(platform, lxd, "carol", "box").await?;
    ensure!(back.config["user.ssp.platform"] == platform.id()? && back.config["limits.processes"] == "500");
    ensure!(back.config["limits.memory"] == "320MiB", "{:?}", back.config.get("limits.memory"));
    ok(cli(platform, &carol, &["snapshot", "restore", "box@first"]).await?, "restore the imported snapshot")?;
    ensure!(sh(platform, &carol, "box", "cat /etc/box-marker").await?.trim() == "first");
    let taken = root(platform, &["container", "import", path, "carol/box"]).await?;
    ensure!(taken.status.code() == Some(6), "imported over an existing name: {:?}", taken.status.code());

    // Hostile archives are refused with the reason, and LXD never sees them.
    let index: &[u8] = b"name: box\nsnapshots: []\noptimized: false\ntype: container\n";
    let hostile: [(&str, Vec<u8>, &str); 4] = [
        (
            "traversal",
            archive(&[
                ("backup/index.yaml", tar::EntryType::Regular, index),
                ("backup/container/rootfs/../../../../etc/cron.d/evil", tar::EntryType::Regular, b"* * * * * root id"),
            ]),
            "outside backup/",
        ),
        ("absolute", archive(&[("/etc/evil", tar::EntryType::Regular, b"x")]), "outside backup/"),
        (
            "index",
            archive(&[
                ("backup/index.yaml", tar::EntryType::Regular, b"name: box\ntype: virtual-machine\n"),
                ("backup/container/backup.yaml", tar::EntryType::Regular, b"x"),
            ]),
            "only containers",
        ),
        (
            "device",
            archive(&[
                ("backup/index.yaml", tar::EntryType::Regular, index),
                ("backup/container/sda", tar::EntryType::Block, b""),
            ]),
            "block device",
        ),
    ];
    let before = lxd.client().instance_names().await?.len();
    for (what, bytes, reason) in hostile {
        let evil = files.path().join(format!("{what}.tar"));
        std::fs::write(&evil, bytes)?;
        let out = root(platform, &["container", "import", evil.to_str().context("path")?, "carol/evil"]).await?;
        ensure!(out.status.code() == Some(2), "{what}: {:?} {}", out.status.code(), text(&out.stderr));
        ensure!(text(&out.stderr).contains(reason), "{what}: the message does not say why: {}", text(&out.stderr));
        ensure!(text(&out.stderr).contains("refused"), "{what}: {}", text(&out.stderr));
    }
    let gzipped = files.path().join("traversal.tar");
    let status = std::process::Command::new("gzip").arg(&gzipped).status().context("gzip must be installed")?;
    ensure!(status.success());
    let out = root(platform, &["container", "import", &format!("{}.gz", gzipped.display()), "carol/evil"]).await?;
    ensure!(out.status.code() == Some(2) && text(&out.stderr).contains("outside backup/"), "{}", text(&out.stderr));
    ensure!(lxd.client().instance_names().await?.len() == before, "a refused archive reached LXD");
    let shown = cli(platform, &carol, &["container", "show", "evil"]).await?;
    ensure!(shown.status.code() == Some(4), "a refused import left a row");
    ok(cli(platform, &carol, &["container", "delete", "box"]).await?, "delete")?;
    Ok(())
}

async fn state_backup_and_restore(lxd: &'static PrivateLxd) -> Result<()> {
    logged(lxd, |lxd, platform| async move {
        let outcome = state_backup_and_restore_body(lxd, &platform).await;
        (platform, outcome)
    })
    .await
}

async fn state_backup_and_restore_body(lxd: &'static PrivateLxd, platform: &Platform) -> Result<()> {
    let dave = platform.user("dave", &[])?;
    let files = tempfile::tempdir()?;
    for name in ["keep", "gone"] {
        ok(cli(platform, &dave, &["container", "create", name]).await?, name)?;
    }
    let backup = files.path().join("state.db");
    let backup_path = backup.to_str().context("path")?;
    let denied = cli(platform, &dave, &["admin", "backup", backup_path]).await?;
    ensure!(denied.status.code() == Some(5), "a user backed up the state: {:?}", denied.status.code());
    ok(root(platform, &["admin", "backup", backup_path]).await?, "backup")?;
    ok(cli(platform, &dave, &["container", "delete", "gone"]).await?, "delete gone")?;
    ok(cli(platform, &dave, &["container", "create", "late"]).await?, "create late")?;
    let late = instance(platform, lxd, "dave", "late").await?.name;

    // A broken backup is refused and the daemon does not start on it.
    let junk = files.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database")?;
    ensure!(
        platform.restart_with(&["--restore-state", junk.to_str().context("path")?]).is_err(),
        "the daemon started on a junk backup"
    );
    ensure!(platform.log().contains("not an ssp state database"), "the refusal does not say why");

    platform.restart_with(&["--restore-state", backup_path])?;
    // (The daemon listens on a new port now: the checks go through its socket, as root.)
    // The restored state wants `gone` again; LXD no longer has it: it is reported lost.
    eventually("gone is reported lost", Duration::from_secs(60), || async {
        let out = root(platform, &["--json", "container", "show", "dave/gone"]).await?;
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(shown["phase"] == "lost" && shown["problem"].as_str().is_some_and(|p| p.contains("vanished")))
    })
    .await?;
    let kept: serde_json::Value =
        serde_json::from_str(&ok(root(platform, &["--json", "container", "show", "dave/keep"]).await?, "keep")?)?;
    ensure!(kept["phase"] == "ready", "{kept}");
    // `late` was made after the backup: the restored state never saw it, and it is kept.
    let pass = platform.request("POST", "/api/v1/reconcile", None, None).await?;
    ensure!(pass.status == 200 && pass.json()["orphans_removed"] == 0, "{pass:?}");
    ensure!(lxd.client().instance(&late).await.is_ok(), "the instance made after the backup was removed");
    ensure!(root(platform, &["container", "show", "dave/late"]).await?.status.code() == Some(4));
    ensure!(platform.log().contains("never recorded"), "the kept instance is not reported");
    for name in ["dave/keep", "dave/gone"] {
        ok(root(platform, &["container", "delete", name]).await?, &format!("delete {name}"))?;
    }
    lxd.lxc(&["delete", "--force", &late])?;
    Ok(())
}

ssp_testkit::lxd_tests![publish_create_and_copy, export_delete_import, state_backup_and_restore];
