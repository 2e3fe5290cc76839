//! The web portal's sign-in end to end, with `curl` as the browser (it keeps a cookie jar and
//! honours the `__Host-` prefix's rules): an invitation made with `ssp user invite`, accepted
//! once to set a password and a key; the session cookie's attributes; CSRF and Origin checks
//! on everything that changes state; sign-out that ends the session on the server; the
//! sign-in throttle; a disabled user's session ending; and every sign-in in the journal.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{ensure, Context, Result};
use ssp_testkit::e2e::{eventually, ok, root, text};
use ssp_testkit::{Platform, PrivateLxd};

/// One HTTP answer as curl saw it.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A browser: curl with the platform's certificate and a cookie jar.
struct Browser {
    base: String,
    cert: PathBuf,
    jar: PathBuf,
    /// HTTP/2 (as browsers speak it) instead of HTTP/1.1. curl reports a refusal answered
    /// before the request body was read as a framing error over HTTP/2, so most calls use
    /// HTTP/1.1; sign-in is tried over both (`Host` against `:authority`).
    http2: bool,
}

impl Browser {
    fn new(platform: &Platform, dir: &Path, name: &str) -> Self {
        let base = platform.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Self { base, cert: platform.cert(), jar: dir.join(format!("{name}.cookies")), http2: false }
    }

    fn origin(&self) -> String {
        self.base.clone()
    }

    /// `method path` with `headers` and an optional JSON body; cookies kept in the jar.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<serde_json::Value>,
    ) -> Result<Reply> {
        let mut curl = tokio::process::Command::new("curl");
        curl.args(["-sS", "-D", "-", "-X", method, "--cacert"]).arg(&self.cert);
        curl.arg(if self.http2 { "--http2" } else { "--http1.1" });
        curl.arg("-b").arg(&self.jar).arg("-c").arg(&self.jar);
        for header in headers {
            curl.args(["-H", header]);
        }
        if let Some(body) = body {
            curl.args(["-H", "Content-Type: application/json", "--data-binary", &body.to_string()]);
        }
        curl.arg(format!("{}{path}", self.base)).stdin(Stdio::null()).kill_on_drop(true);
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), curl.output()).await.context("curl hung")??;
        ensure!(out.status.success(), "curl {method} {path}: {}", text(&out.stderr));
        let raw = text(&out.stdout);
        let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
        let status = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
        Ok(Reply { status, headers: headers.to_string(), body: body.to_string() })
    }
}

async fn web_sessions(lxd: &'static PrivateLxd) -> Result<()> {
    let platform = Platform::start_async_with(PathBuf::from(env!("CARGO_BIN_EXE_ssp")), lxd, "busybox", "").await?;
    let outcome = scenario(&platform).await;
    outcome.map_err(|e| platform.explain(e))
}

async fn scenario(platform: &Platform) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    platform.user("alice", &[])?;
    let browser = Browser::new(platform, dir, "alice");
    let same_origin = format!("Origin: {}", browser.origin());

    // The admin's invitation: a link to the portal on this server.
    let link = ok(root(platform, &["user", "invite", "alice", "--hours", "2"]).await?, "invite")?;
    let link = link.trim();
    // Made over the local socket, it names this host and the API's port.
    let (site, token) = link.split_once("/#/invite/").with_context(|| format!("not an invitation link: {link}"))?;
    let port = browser.origin().rsplit(':').next().unwrap_or_default().to_string();
    ensure!(site.starts_with("https://") && site.ends_with(&format!(":{port}")), "{link} is not on port {port}");
    let shown = browser.call("GET", &format!("/api/v1/invites/{token}"), &[], None).await?;
    ensure!(shown.status == 200 && shown.json()["name"] == "alice", "{}", shown.body);

    // Accepting it from another site is refused; a short password too.
    let path = format!("/api/v1/invites/{token}");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
    let accept = serde_json::json!({ "password": "correct horse battery", "public_key": key });
    for header in ["Origin: https://evil.example".to_string(), "Sec-Fetch-Site: cross-site".to_string()] {
        let refused = browser.call("POST", &path, std::slice::from_ref(&header), Some(accept.clone())).await?;
        ensure!(refused.status == 403, "{header}: {} {}", refused.status, refused.body);
    }
    let short = browser
        .call("POST", &path, std::slice::from_ref(&same_origin), Some(serde_json::json!({ "password": "short" })))
        .await?;
    ensure!(short.status == 400, "a short password: {} {}", short.status, short.body);
    let accepted = browser.call("POST", &path, std::slice::from_ref(&same_origin), Some(accept.clone())).await?;
    ensure!(accepted.status == 200, "accepting: {} {}", accepted.status, accepted.body);
    let cookie_line = accepted
        .headers
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .context("no Set-Cookie")?;
    for part in ["__Host-ssp-session=", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        ensure!(cookie_line.contains(part), "{cookie_line} lacks {part}");
    }
    ensure!(!accepted.body.contains(cookie_value(cookie_line)), "the cookie's secret is in the body");
    let csrf = accepted.json()["csrf_token"].as_str().context("csrf_token")?.to_string();
    let again = browser.call("POST", &path, std::slice::from_ref(&same_origin), Some(accept)).await?;
    ensure!(again.status == 404, "an invitation worked twice: {}", again.status);

    // Signed in: reads work with the cookie alone, and the key came with the invitation.
    let session = browser.call("GET", "/api/v1/session", &[], None).await?;
    ensure!(session.status == 200 && session.json()["name"] == "alice", "{}", session.body);
    ensure!(session.json()["csrf_token"] == csrf.as_str(), "{}", session.body);
    let keys = browser.call("GET", "/api/v1/users/alice/keys", &[], None).await?;
    ensure!(keys.status == 200 && keys.json().as_array().map(Vec::len) == Some(1), "{}", keys.body);

    // Changes need the CSRF token and this site's Origin.
    let token_path = "/api/v1/users/alice/tokens";
    let new_token = serde_json::json!({ "name": "from-portal" });
    let csrf_header = format!("X-CSRF-Token: {csrf}");
    let cases = [
        (vec![same_origin.clone()], 403, "no CSRF token"),
        (vec![same_origin.clone(), "X-CSRF-Token: forged".to_string()], 403, "a wrong CSRF token"),
        (vec!["Origin: https://evil.example".to_string(), csrf_header.clone()], 403, "a foreign Origin"),
        (vec![csrf_header.clone(), "Sec-Fetch-Site: same-site".to_string()], 403, "a same-site request"),
        (vec![same_origin.clone(), csrf_header.clone()], 201, "the right token"),
    ];
    let mut bearer = String::new();
    for (headers, expected, what) in cases {
        let reply = browser.call("POST", token_path, &headers, Some(new_token.clone())).await?;
        ensure!(reply.status == expected, "{what}: {} {}", reply.status, reply.body);
        if let Some(token) = reply.json()["token"].as_str() {
            bearer = token.to_string();
        }
    }

    // Sign-out ends the session on the server: the old cookie, replayed, opens nothing.
    let stolen = format!("Cookie: {}", cookie_value(cookie_line));
    let out = browser.call("DELETE", "/api/v1/session", &[same_origin.clone(), csrf_header.clone()], None).await?;
    ensure!(out.status == 204, "sign-out: {} {}", out.status, out.body);
    let anonymous = Browser { jar: dir.join("nobody.cookies"), ..Browser::new(platform, dir, "x") };
    let replayed = anonymous.call("GET", "/api/v1/containers", std::slice::from_ref(&stolen), None).await?;
    ensure!(replayed.status == 401, "a signed-out cookie still works: {}", replayed.status);

    // Sign-in with the password; failures make the next try wait, and are journaled.
    let sign_in = |password: &str| serde_json::json!({ "name": "alice", "password": password });
    for _ in 0..3 {
        let wrong =
            browser.call("POST", "/api/v1/session", std::slice::from_ref(&same_origin), Some(sign_in("guess"))).await?;
        ensure!(wrong.status == 401, "a wrong password: {} {}", wrong.status, wrong.body);
    }
    let throttled =
        browser.call("POST", "/api/v1/session", std::slice::from_ref(&same_origin), Some(sign_in("guess"))).await?;
    ensure!(throttled.status == 429, "no throttle after 3 failures: {} {}", throttled.status, throttled.body);
    let retry_after: u64 = throttled
        .headers
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .context("no Retry-After")?;
    ensure!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let nobody = browser
        .call(
            "POST",
            "/api/v1/session",
            std::slice::from_ref(&same_origin),
            Some(serde_json::json!({ "name": "nobody", "password": "x" })),
        )
        .await?;
    ensure!(nobody.status == 429, "the source is slowed down for every name: {}", nobody.status);
    tokio::time::sleep(std::time::Duration::from_secs(retry_after + 1)).await;
    let http2 = Browser { http2: true, ..Browser::new(platform, dir, "alice") };
    let right = http2
        .call("POST", "/api/v1/session", std::slice::from_ref(&same_origin), Some(sign_in("correct horse battery")))
        .await?;
    ensure!(right.status == 200, "the right password after waiting: {} {}", right.status, right.body);
    ensure!(right.headers.starts_with("HTTP/2"), "not HTTP/2: {}", right.headers);
    let listed = browser.call("GET", "/api/v1/containers", &[], None).await?;
    ensure!(listed.status == 200, "{} {}", listed.status, listed.body);

    // The admin reads the sign-ins in the audit log and the system's health; alice may not.
    let audit = platform.request("GET", "/api/v1/audit?action=session.&object=alice", None, None).await?;
    ensure!(audit.status == 200, "audit: {} {}", audit.status, audit.body);
    let rows = audit.json();
    let actions: Vec<&str> = rows.as_array().into_iter().flatten().filter_map(|r| r["action"].as_str()).collect();
    ensure!(actions.contains(&"session.sign_in"), "no sign-in in the audit log: {}", audit.body);
    ensure!(actions.iter().all(|a| a.starts_with("session.")), "the action filter let through: {actions:?}");
    for path in ["/api/v1/audit", "/api/v1/health"] {
        let refused = platform.request("GET", path, Some(&bearer), None).await?;
        ensure!(refused.status == 403, "alice's token on {path}: {} {}", refused.status, refused.body);
    }
    let health = platform.request("GET", "/api/v1/health", None, None).await?;
    ensure!(health.status == 200, "health: {} {}", health.status, health.body);
    ensure!(health.json()["lxd"]["reachable"] == true, "LXD not reachable: {}", health.body);

    // Live streams: alice's (her cookie) hears her own changes and the reconciler's news of
    // her new container; bob's (his token) hears neither, only that it is open.
    platform.user("bob", &[])?;
    let alice_live = LiveStream::open(&browser, None)?;
    let bob_live = LiveStream::open(&anonymous, Some(&platform.token("bob")?))?;
    for (who, stream) in [("alice", &alice_live), ("bob", &bob_live)] {
        stream.wait_for(who, "event: ready").await?;
    }
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHesCPMehDT4gRuZEGhi1PKEacdbag4uUWGnRfXpoxZd alice@desk";
    let added = platform
        .request("POST", "/api/v1/users/alice/keys", Some(&bearer), Some(serde_json::json!({ "public_key": key })))
        .await?;
    ensure!(added.status == 201, "adding a key: {} {}", added.status, added.body);
    alice_live.wait_for("alice", r#"data: {"topic":"keys","owner":"alice"}"#).await?;
    ok(root(platform, &["container", "create", "alice/live"]).await?, "create alice/live")?;
    alice_live.wait_for("alice", r#"data: {"topic":"containers"}"#).await?;
    // bob's stream was open all along: had it heard of alice's changes, they would be there.
    let heard = bob_live.text();
    ensure!(!heard.contains("alice") && !heard.contains("containers"), "bob's stream heard alice's changes:\n{heard}");

    // A disabled user's session ends at once, and so does her live stream.
    ok(root(platform, &["user", "disable", "alice"]).await?, "disable")?;
    alice_live.wait_for("alice", "event: ended").await?;
    alice_live.wait_closed("alice").await?;
    let disabled = browser.call("GET", "/api/v1/containers", &[], None).await?;
    ensure!(disabled.status == 401, "a disabled user's session still works: {}", disabled.status);
    let session = browser.call("GET", "/api/v1/session", &[], None).await?;
    ensure!(session.status == 401, "{}", session.status);

    // The journal has the sign-ins, the failures and the sign-out.
    let journal = std::process::Command::new("sqlite3")
        .arg(platform.database())
        .arg("SELECT action FROM journal WHERE object = 'alice'")
        .output()
        .context("running sqlite3")?;
    let actions = ok(journal, "sqlite3")?;
    for action in
        ["user.invite", "user.invite_redeemed", "session.sign_in", "session.sign_in_failed", "session.sign_out"]
    {
        ensure!(actions.lines().any(|line| line == action), "{action} is not in the journal:\n{actions}");
    }
    Ok(())
}

/// `GET /api/v1/events` read by `curl -N` as it arrives.
struct LiveStream {
    heard: std::sync::Arc<std::sync::Mutex<String>>,
    child: std::sync::Arc<tokio::sync::Mutex<tokio::process::Child>>,
}

impl LiveStream {
    /// Opens the stream with `browser`'s cookies, or with `token`.
    fn open(browser: &Browser, token: Option<&str>) -> Result<Self> {
        let mut curl = tokio::process::Command::new("curl");
        curl.args(["-sS", "-N", "--http1.1", "--cacert"]).arg(&browser.cert);
        curl.arg("-b").arg(&browser.jar);
        if let Some(token) = token {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        curl.arg(format!("{}/api/v1/events", browser.base));
        let mut child = curl.stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
        let mut stdout = child.stdout.take().context("curl's stdout")?;
        let heard = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&heard);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buffer).await {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Ok(Self { heard, child: std::sync::Arc::new(tokio::sync::Mutex::new(child)) })
    }

    fn text(&self) -> String {
        self.heard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Waits until the stream said `line` (a whole line).
    async fn wait_for(&self, who: &str, line: &str) -> Result<()> {
        let what = format!("{who}'s live stream says {line}");
        let result = eventually(&what, std::time::Duration::from_secs(60), || async {
            Ok(self.text().lines().any(|l| l == line))
        })
        .await;
        result.with_context(|| format!("it said:\n{}", self.text()))
    }

    /// Waits until the server closed the stream (curl ended).
    async fn wait_closed(&self, who: &str) -> Result<()> {
        eventually(&format!("{who}'s live stream closes"), std::time::Duration::from_secs(30), || async {
            Ok(self.child.lock().await.try_wait()?.is_some())
        })
        .await
    }
}

/// `NAME=VALUE` of a `Set-Cookie` line.
fn cookie_value(line: &str) -> &str {
    line.split_once(':').map_or("", |(_, v)| v).trim().split(';').next().unwrap_or("")
}

ssp_testkit::lxd_tests![web_sessions];
