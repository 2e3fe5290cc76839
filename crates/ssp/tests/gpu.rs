//! GPUs end to end with the emulated inventory: the real `ssp serve` with `[gpu] emulate = 4`
//! (real character devices 195:N under a folder of /dev), the real CLI, a private real LXD.
//! Exact assignment and isolation inside the container, refusals that say what is free,
//! hot detach, a lease that expires, usage placed by cgroup for processes that really run in
//! the container, and idle reclaim driven by scripted telemetry — firing on the idle GPU and
//! not on the busy ones, and a snapshot restore that keeps the GPUs ssp manages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use ssp_testkit::e2e::{cli, eventually, ok, text, EXEC_PATIENCE};
use ssp_testkit::{Platform, PrivateLxd};

/// Where this suite's emulated nodes go (removed at the end).
const DEV_DIR: &str = "/dev/ssp-gpu-test";

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssp"))
}

/// Host GPU nodes visible inside `container`: `(name, major, minor)`, from `ls -l /dev`.
async fn nodes_inside(platform: &Platform, config: &Path, container: &str) -> Result<Vec<(String, u32, u32)>> {
    let listing = ok(cli(platform, config, &["exec", container, "--", "ls", "-l", "/dev"]).await?, "ls /dev")?;
    let mut nodes = Vec::new();
    for line in listing.lines().filter(|l| l.starts_with('c')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.last().filter(|n| n.starts_with("nvidia")) else { continue };
        // `crw-rw-rw-  1 root root  195,   2 Nov 25 03:40 nvidia0`
        let numbers = line.split_once("root").map(|(_, rest)| rest.replace("root", "")).unwrap_or_default();
        let (major, minor) = numbers.trim().split_once(',').context("major,minor")?;
        let minor = minor.split_whitespace().next().context("minor")?;
        nodes.push((name.to_string(), major.trim().parse()?, minor.parse()?));
    }
    nodes.sort();
    Ok(nodes)
}

async fn shown(platform: &Platform, config: &Path, container: &str) -> Result<Value> {
    let out = ok(cli(platform, config, &["--json", "container", "show", container]).await?, "container show")?;
    Ok(serde_json::from_str(&out)?)
}

fn script(platform: &Platform, telemetry: Value) -> Result<()> {
    let path = platform.dir().join("state/gpu-telemetry.json");
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, telemetry.to_string())?;
    std::fs::rename(&temporary, &path)?;
    Ok(())
}

fn busy(indices: &[u32]) -> Value {
    json!({ "gpus": indices.iter().map(|i| json!({"index": i, "utilization": 60})).collect::<Vec<_>>() })
}

/// The host PID of the process whose command line is `argv` and which runs in `instance`.
fn host_pid_of(argv: &[&str], instance: &str) -> Result<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline == wanted && ssp_gpu::cgroup::instance_of_pid(Path::new("/proc"), pid).as_deref() == Some(instance) {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process {argv:?} in {instance}")
}

async fn notices(platform: &Platform, config: &Path, container: &str) -> Result<String> {
    let out =
        cli(platform, config, &["exec", container, "--", "sh", "-c", "cat /var/log/ssp/notices 2>/dev/null"]).await?;
    Ok(text(&out.stdout))
}

async fn gpus_exactly_as_granted(lxd: &'static PrivateLxd) -> Result<()> {
    let extra = format!(
        "[gpu]\nemulate = 4\nemulated_dev_dir = \"{DEV_DIR}\"\nsample_interval_secs = 1\nidle_reclaim = true\n\
         idle_threshold_percent = 10\nidle_after_secs = 8\nidle_warning_secs = 4\n"
    );
    let platform = Platform::start_async_with(binary(), lxd, "busybox", &extra).await?;
    let result = scenario(&platform, lxd).await;
    std::fs::remove_dir_all(DEV_DIR).ok();
    result.map_err(|e| platform.explain(e))
}

async fn scenario(platform: &Platform, lxd: &'static PrivateLxd) -> Result<()> {
    // Everything busy until a step says otherwise, so idle reclaim waits for its own step.
    script(platform, busy(&[0, 1, 2, 3]))?;
    let alice = platform.user("alice", &["--max-gpus", "3"])?;
    let bob = platform.user("bob", &["--max-gpus", "3"])?;
    let bob_token = platform.token("bob")?;

    // What bob gets for alice's container before it exists: after, it must be the same.
    let ask = Some(json!({"indices": [2]}));
    let attach_path = "/api/v1/containers/alice/dev/gpus";
    let detach_path = "/api/v1/containers/alice/dev/gpus/2";
    let attach_missing = platform.request("POST", attach_path, Some(&bob_token), ask.clone()).await?;
    let detach_missing = platform.request("DELETE", detach_path, Some(&bob_token), None).await?;

    // Exactly host GPUs 2 and 3, seen inside as nvidia0 and nvidia1, and no others.
    ok(cli(platform, &alice, &["container", "create", "dev", "--gpu", "2,3"]).await?, "alice creates dev")?;
    let nodes = nodes_inside(platform, &alice, "dev").await?;
    ensure!(nodes == vec![("nvidia0".into(), 195, 2), ("nvidia1".into(), 195, 3)], "inside alice/dev: {nodes:?}");
    eventually("the GPU health probe passes", EXEC_PATIENCE, || async {
        Ok(shown(platform, &alice, "dev").await?["gpu_health"] == "healthy")
    })
    .await?;
    ensure!(shown(platform, &alice, "dev").await?["gpus"] == json!([2, 3]));

    // Another user cannot get them, and is told what is free; the refused create leaves nothing.
    let refused = cli(platform, &bob, &["container", "create", "box", "--gpu", "3"]).await?;
    ensure!(refused.status.code() == Some(6), "bob asking for GPU 3: exit {:?}", refused.status.code());
    let message = text(&refused.stderr);
    ensure!(message.contains("GPU 3 is in use") && message.contains("free for you: 0,1"), "{message}");
    let gone = cli(platform, &bob, &["container", "show", "box"]).await?;
    ensure!(gone.status.code() == Some(4), "a refused create left a container");
    let over = cli(platform, &bob, &["container", "create", "box", "--gpus", "4"]).await?;
    ensure!(text(&over.stderr).contains("GPU quota exceeded"), "{}", text(&over.stderr));
    ok(cli(platform, &bob, &["container", "create", "box", "--gpus", "2"]).await?, "bob creates box")?;
    ensure!(shown(platform, &bob, "box").await?["gpus"] == json!([0, 1]));

    // Restoring a snapshot (taken while the GPUs were held, of a running container) undoes the
    // change inside and keeps the GPUs ssp manages: the same grant, the same nodes inside.
    ok(cli(platform, &bob, &["snapshot", "create", "box@before"]).await?, "bob snapshots box")?;
    ok(
        cli(platform, &bob, &["exec", "--root", "box", "--", "sh", "-c", "echo changed > /root-change"]).await?,
        "change",
    )?;
    ok(cli(platform, &bob, &["snapshot", "restore", "box@before"]).await?, "bob restores box")?;
    let after = shown(platform, &bob, "box").await?;
    ensure!(after["status"] == "Running" && after["gpus"] == json!([0, 1]), "after restore: {after}");
    eventually("box's GPU nodes are back after the restore", EXEC_PATIENCE, || async {
        Ok(nodes_inside(platform, &bob, "box").await? == vec![("nvidia0".into(), 195, 0), ("nvidia1".into(), 195, 1)])
    })
    .await?;
    let change = cli(platform, &bob, &["exec", "--root", "box", "--", "cat", "/root-change"]).await?;
    ensure!(!change.status.success(), "the change survived the restore: {}", text(&change.stdout));

    // Bob cannot touch alice's GPUs: her container answers exactly like a missing one.
    let foreign = platform.request("POST", attach_path, Some(&bob_token), ask).await?;
    ensure!(foreign.status == 404 && foreign == attach_missing, "{foreign:?} vs {attach_missing:?}");
    let detach = platform.request("DELETE", detach_path, Some(&bob_token), None).await?;
    ensure!(detach.status == 404 && detach == detach_missing, "{detach:?} vs {detach_missing:?}");

    // Hot detach: the node goes, the container keeps running.
    ok(cli(platform, &alice, &["gpu", "detach", "dev", "--gpu", "3"]).await?, "detach 3")?;
    eventually("GPU 3 leaves alice/dev", EXEC_PATIENCE, || async {
        Ok(nodes_inside(platform, &alice, "dev").await? == vec![("nvidia0".into(), 195, 2)])
    })
    .await?;
    ensure!(shown(platform, &alice, "dev").await?["status"] == "Running");

    // A lease that ends detaches by itself and tells the user inside.
    let grant =
        ok(cli(platform, &alice, &["--json", "gpu", "attach", "dev", "--gpu", "3", "--for", "15s"]).await?, "lease")?;
    let grant: Value = serde_json::from_str(&grant)?;
    ensure!(grant["holds"] == json!([2, 3]) && grant["expires_at"].is_i64(), "{grant}");
    eventually("the leased GPU is plugged in", Duration::from_secs(15), || async {
        Ok(nodes_inside(platform, &alice, "dev").await?.len() == 2)
    })
    .await?;
    eventually("the lease ends and GPU 3 is detached", EXEC_PATIENCE, || async {
        Ok(nodes_inside(platform, &alice, "dev").await? == vec![("nvidia0".into(), 195, 2)])
    })
    .await?;
    let told = notices(platform, &alice, "dev").await?;
    ensure!(told.contains("Your lease on GPU 3 for alice/dev has ended"), "notices: {told}");

    // Usage: a process that really runs in alice/dev, and one on the host, placed by cgroup.
    ok(
        cli(platform, &alice, &["exec", "dev", "--", "sh", "-c", "setsid sleep 6061 </dev/null >/dev/null 2>&1 &"])
            .await?,
        "start a process",
    )?;
    let instance = platform
        .lxd_instances(lxd)
        .await?
        .into_iter()
        .find(|i| i.config.get("user.ssp.owner").map(String::as_str) == Some("alice"))
        .context("alice's instance")?
        .name;
    let mut pid = None;
    eventually("the process shows on the host", Duration::from_secs(30), || {
        let found = host_pid_of(&["sleep", "6061"], &instance).ok();
        pid = found;
        async move { Ok(found.is_some()) }
    })
    .await?;
    let pid = pid.context("pid")?;
    let mut telemetry = busy(&[0, 1, 2, 3]);
    telemetry["gpus"][2]["processes"] = json!([{"pid": pid, "memory": 1 << 30}]);
    telemetry["gpus"][2]["memory_used"] = json!(1u64 << 30);
    telemetry["gpus"][0]["processes"] = json!([{"pid": std::process::id(), "memory": 1 << 20}]);
    script(platform, telemetry)?;
    eventually("usage shows alice's process", Duration::from_secs(30), || async {
        let usage = ok(cli(platform, &alice, &["--json", "gpu", "usage"]).await?, "gpu usage")?;
        let usage: Value = serde_json::from_str(&usage)?;
        let dev =
            usage["containers"].as_array().and_then(|c| c.iter().find(|c| c["container"] == "alice/dev")).cloned();
        Ok(dev.is_some_and(|d| d["memory_used"] == json!(1u64 << 30) && d["processes"][0]["pid"] == json!(pid))
            && usage["users"][0]["user"] == "alice")
    })
    .await?;
    let listed: Value = serde_json::from_str(&ok(cli(platform, &alice, &["--json", "gpu", "list"]).await?, "list")?)?;
    ensure!(listed["source"] == "emulated" && listed["gpus"].as_array().map(Vec::len) == Some(4), "{listed}");
    ensure!(listed["gpus"][2]["processes"][0]["container"] == "alice/dev", "{listed}");
    ensure!(listed["gpus"][0]["holders"][0]["owner"] == "bob", "{listed}");
    ensure!(listed["gpus"][0]["holders"][0].get("container").is_none(), "alice sees bob's container name");
    ensure!(listed["gpus"][0]["processes"] == json!([]), "alice sees a host process: {listed}");
    let as_admin: Value = serde_json::from_str(&ok(platform.root_cli(&["--json", "gpu", "list"])?, "admin list")?)?;
    ensure!(as_admin["gpus"][0]["processes"][0]["pid"] == json!(std::process::id()), "{as_admin}");
    ensure!(as_admin["gpus"][0]["processes"][0].get("container").is_none(), "a host process placed in a container");
    let bob_view: Value = serde_json::from_str(&ok(cli(platform, &bob, &["--json", "gpu", "usage"]).await?, "bob")?)?;
    ensure!(!bob_view.to_string().contains("alice"), "bob sees alice's usage: {bob_view}");
    // The last hour, a bucket a minute: GPU 2 at the scripted 60% with alice's 1 GiB.
    let history: Value =
        serde_json::from_str(&ok(cli(platform, &bob, &["--json", "gpu", "usage", "--history"]).await?, "history")?)?;
    ensure!(history["bucket_secs"] == 60 && history["window_secs"] == 3600, "{history}");
    let gpu2 = history["gpus"].as_array().and_then(|g| g.iter().find(|g| g["index"] == 2)).context("no GPU 2")?;
    let buckets = gpu2["buckets"].as_array().context("buckets")?;
    ensure!(buckets.iter().any(|b| b["utilization_max"] == 60), "{history}");
    ensure!(buckets.iter().any(|b| b["memory_used_max"] == json!(1u64 << 30)), "{history}");
    let table = ok(cli(platform, &bob, &["gpu", "usage", "--history"]).await?, "history table")?;
    ensure!(table.lines().any(|l| l.starts_with('2') && l.contains("60%") && l.contains("1024 MiB")), "{table}");

    // Idle reclaim: alice's GPU 2 goes idle and is taken back after a warning; bob's busy
    // GPUs stay with him.
    script(platform, busy(&[0, 1]))?;
    eventually("the idle GPU is reclaimed", EXEC_PATIENCE, || async {
        Ok(shown(platform, &alice, "dev").await?["gpus"] == json!([]))
    })
    .await?;
    eventually("its node leaves the container", EXEC_PATIENCE, || async {
        Ok(nodes_inside(platform, &alice, "dev").await?.is_empty())
    })
    .await?;
    let told = notices(platform, &alice, "dev").await?;
    let warned = told.find("has been idle").context(format!("no idle warning: {told}"))?;
    let reclaimed = told.find("stayed idle and was detached").context(format!("no reclaim notice: {told}"))?;
    ensure!(warned < reclaimed, "warned after the fact: {told}");
    ensure!(shown(platform, &bob, "box").await?["gpus"] == json!([0, 1]), "bob's busy GPUs were reclaimed");
    ensure!(shown(platform, &alice, "dev").await?["status"] == "Running");

    let hours: Value = serde_json::from_str(&ok(platform.root_cli(&["--json", "gpu", "usage"])?, "hours")?)?;
    let users = hours["users"].as_array().context("users")?;
    ensure!(users.iter().any(|u| u["user"] == "alice" && u["holding"] == 0 && u["gpu_hours"].as_f64() > Some(0.0)));
    ensure!(users.iter().any(|u| u["user"] == "bob" && u["holding"] == 2));
    Ok(())
}

/// A container whose GPU probe always fails costs LXD a handful of operations a minute
/// (capped exponential backoff), `ssp container show` says what failed and when the next try
/// is, and once the cause is gone the next try makes it healthy again.
async fn a_failing_gpu_probe_backs_off(lxd: &'static PrivateLxd) -> Result<()> {
    const PROBE_DEV_DIR: &str = "/dev/ssp-gpu-test-probe";
    let extra = format!("[gpu]\nemulate = 2\nemulated_dev_dir = \"{PROBE_DEV_DIR}\"\nsample_interval_secs = 5\n");
    let platform = Platform::start_async_with(binary(), lxd, "busybox", &extra).await?;
    let result = probe_scenario(&platform, lxd).await;
    std::fs::remove_dir_all(PROBE_DEV_DIR).ok();
    result.map_err(|e| platform.explain(e))
}

async fn probe_scenario(platform: &Platform, lxd: &'static PrivateLxd) -> Result<()> {
    let carol = platform.user("carol", &["--max-gpus", "2"])?;
    ok(cli(platform, &carol, &["container", "create", "probe", "--gpu", "0"]).await?, "carol creates probe")?;
    ensure!(shown(platform, &carol, "probe").await?["gpu_health"] == "healthy", "create returned before the probe");
    let instance = platform
        .lxd_instances(lxd)
        .await?
        .into_iter()
        .find(|i| i.config.get("user.ssp.name").map(String::as_str) == Some("probe"))
        .context("carol/probe's instance")?
        .name;

    // A stray regular file where GPU nodes live makes every probe fail, re-plug or not.
    ok(cli(platform, &carol, &["exec", "--root", "probe", "--", "touch", "/dev/nvidia7"]).await?, "plant")?;
    let attach = cli(platform, &carol, &["gpu", "attach", "probe", "--gpu", "1"]).await?;
    ensure!(attach.status.code() == Some(6), "attach with a failing probe: exit {:?}", attach.status.code());
    let said = text(&attach.stderr);
    ensure!(said.contains("GPU health probe failed") && said.contains("not a character device"), "{said}");
    let view = shown(platform, &carol, "probe").await?;
    ensure!(view["problem"].as_str().is_some_and(|p| p.contains("GPU health probe failed")), "{view}");
    ensure!(view["next_try_at"].as_i64() > view["problem_at"].as_i64(), "no next try: {view}");
    ensure!(view["converged"] == false, "{view}");
    let human = ok(cli(platform, &carol, &["container", "show", "probe"]).await?, "show")?;
    ensure!(human.contains("next try at"), "{human}");

    // Count the LXD operations on its instance for a minute: without backoff the reconciler
    // re-plugged and probed every ~130 ms (hundreds of operations); with it, a few tries.
    let mut events = lxd.client().events(&[ssp_lxd::EventKind::Operation]).await?;
    let path = format!("/1.0/instances/{instance}");
    let mut operations = std::collections::BTreeSet::new();
    let window = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(window);
    loop {
        tokio::select! {
            () = &mut window => break,
            event = events.next() => {
                let event = event.context("the event stream ended")??;
                let on_it = event.metadata["resources"]["instances"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|p| p.as_str() == Some(&path)));
                if on_it {
                    operations.insert(event.metadata["id"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    drop(events);
    eprintln!("LXD operations on a container whose GPU probe always fails, over 60 s: {}", operations.len());
    // Tries at about 2, 6, 14 and 30 s (±20 %), each a re-plug (two updates) and a probe.
    ensure!(
        (2..=20).contains(&operations.len()),
        "{} LXD operations on a container whose probe always fails, in 60 s",
        operations.len()
    );
    let view = shown(platform, &carol, "probe").await?;
    ensure!(view["problem"].as_str().is_some_and(|p| p.contains("GPU health probe failed")), "{view}");

    // The cause goes; an explicit pass tries at once (no waiting out the backoff).
    ok(cli(platform, &carol, &["exec", "--root", "probe", "--", "rm", "/dev/nvidia7"]).await?, "unplant")?;
    let report = platform.request("POST", "/api/v1/reconcile", None, None).await?;
    ensure!(report.status == 200, "reconcile: {report:?}");
    let view = shown(platform, &carol, "probe").await?;
    ensure!(view["gpu_health"] == "healthy" && view.get("problem").is_none(), "{view}");
    ensure!(view["converged"] == true && view["gpus"] == json!([0, 1]), "{view}");
    let nodes = nodes_inside(platform, &carol, "probe").await?;
    ensure!(nodes == vec![("nvidia0".into(), 195, 0), ("nvidia1".into(), 195, 1)], "inside: {nodes:?}");

    // A detach returns once the node is gone from the running container.
    ok(cli(platform, &carol, &["gpu", "detach", "probe", "--gpu", "1"]).await?, "detach")?;
    let nodes = nodes_inside(platform, &carol, "probe").await?;
    ensure!(nodes == vec![("nvidia0".into(), 195, 0)], "right after the detach returned: {nodes:?}");
    Ok(())
}

ssp_testkit::lxd_tests![gpus_exactly_as_granted, a_failing_gpu_probe_backs_off];
