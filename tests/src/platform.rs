//! A real `ssp serve` for end-to-end tests: its own state folder, socket and HTTPS port,
//! driving the binary's private LXD daemon. Several can share one LXD: each tags its
//! instances with its own platform id.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::PrivateLxd;

/// A running ssp daemon.
#[derive(Debug)]
pub struct Platform {
    binary: PathBuf,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// `https://127.0.0.1:PORT` of the current run.
    pub https: Mutex<String>,
    /// The SSH gateway of the current run: its address and host key line, if on.
    pub gateway: Mutex<Option<(String, String)>>,
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Platform {
    /// Starts `binary serve` against `lxd`, with `image` as the default image.
    pub fn start(binary: &Path, lxd: &PrivateLxd, image: &str) -> Result<Self> {
        Self::start_with(binary, lxd, image, "")
    }

    /// Like [`Platform::start`], with `extra` appended to the generated `ssp.toml` (whole
    /// sections, e.g. `"[gpu]\nemulate = 4\n"`), for suites that need more than the defaults.
    pub fn start_with(binary: &Path, lxd: &PrivateLxd, image: &str, extra: &str) -> Result<Self> {
        let dir = lxd.dir().join(crate::unique_name("ssp"));
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            r#"state_dir = "{state}"
[api]
listen = "127.0.0.1:0"
socket = "{dir}/ssp.sock"
[lxd]
socket = "{lxd}"
pool = "{pool}"
network = "{bridge}"
[defaults]
image = "{image}"
cpus = 1
memory = "256MiB"
disk = "1GiB"
max_processes = 500
[reconcile]
interval_secs = 2
{gateway}{extra}"#,
            // Tests run side by side: the gateway gets a free loopback port unless the suite
            // configures it.
            gateway = if extra.contains("[gateway]") { "" } else { "[gateway]\nlisten = \"127.0.0.1:0\"\n" },
            state = dir.join("state").display(),
            dir = dir.display(),
            lxd = lxd.socket().display(),
            pool = crate::daemon::POOL,
            bridge = lxd.bridge,
        );
        std::fs::write(dir.join("ssp.toml"), config)?;
        let platform = Self {
            binary: binary.to_path_buf(),
            dir,
            child: Mutex::new(None),
            https: Mutex::new(String::new()),
            gateway: Mutex::new(None),
        };
        platform.launch()?;
        Ok(platform)
    }

    fn launch(&self) -> Result<()> {
        self.launch_with(&[])
    }

    fn launch_with(&self, extra_args: &[&str]) -> Result<()> {
        let listening = self.dir.join("state/listening.json");
        std::fs::remove_file(&listening).ok();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("ssp.log"))?;
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(self.dir.join("ssp.toml"))
            .args(extra_args)
            .env("SSP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ssp serve")?;
        *self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(text) = std::fs::read_to_string(&listening) {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                let https = value["https"].as_str().context("no https address")?.to_string();
                *self.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = https;
                let gateway = value["gateway"]["listen"].as_str().zip(value["gateway"]["host_key"].as_str());
                *self.gateway.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    gateway.map(|(listen, key)| (listen.to_string(), key.to_string()));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ssp serve did not come up in 120 s:\n{}", self.log());
            }
            let exited = match self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                bail!("ssp serve exited ({status}) before it served:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and waits for it to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the daemon again on the same state.
    pub fn restart(&self) -> Result<()> {
        self.kill();
        self.launch()
    }

    /// Starts the daemon again on the same state, with `extra_args` after `serve --config
    /// FILE` (e.g. `--restore-state BACKUP`).
    pub fn restart_with(&self, extra_args: &[&str]) -> Result<()> {
        self.kill();
        self.launch_with(extra_args)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ssp.log")).unwrap_or_default()
    }

    /// This installation's id, the `user.ssp.platform` tag on its LXD instances.
    pub fn id(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("state/platform-id"))?.trim().to_string())
    }

    /// The LXD instances this installation made (tagged with its id).
    pub async fn lxd_instances(&self, lxd: &PrivateLxd) -> Result<Vec<ssp_lxd::wire::Instance>> {
        let id = self.id()?;
        Ok(lxd
            .client()
            .instances()
            .await?
            .into_iter()
            .filter(|i| i.config.get("user.ssp.platform") == Some(&id))
            .collect())
    }

    /// Its containers as LXD has them, as `owner/name`.
    pub async fn lxd_containers(&self, lxd: &PrivateLxd) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .lxd_instances(lxd)
            .await?
            .into_iter()
            .map(|i| {
                let tag = |key: &str| i.config.get(key).cloned().unwrap_or_default();
                format!("{}/{}", tag("user.ssp.owner"), tag("user.ssp.name"))
            })
            .collect())
    }

    /// Starts one on `lxd` from an async test, importing `image` first.
    pub async fn start_async(binary: PathBuf, lxd: &'static PrivateLxd, image: &str) -> Result<Self> {
        Self::start_async_with(binary, lxd, image, "").await
    }

    /// [`Platform::start_with`] from async code.
    pub async fn start_async_with(binary: PathBuf, lxd: &'static PrivateLxd, image: &str, extra: &str) -> Result<Self> {
        lxd.ensure_image(image).await?;
        let (image, extra) = (image.to_string(), extra.to_string());
        tokio::task::spawn_blocking(move || Platform::start_with(&binary, lxd, &image, &extra)).await?
    }

    /// The local socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ssp.sock")
    }

    /// The certificate clients pin.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("state/tls/cert.pem")
    }

    /// The state database.
    pub fn database(&self) -> PathBuf {
        self.dir.join("state/ssp.db")
    }

    /// A folder for this platform's client files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CLI as the host's root over the local socket, ready to run.
    pub fn root_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("SSP_URL", format!("unix:{}", self.socket().display()))
            .env("SSP_CONFIG", self.dir.join("root-cli.toml"))
            .env_remove("SSP_TOKEN")
            .stdin(Stdio::null());
        command
    }

    /// Runs the CLI as the host's root over the local socket.
    pub fn root_cli(&self, args: &[&str]) -> Result<Output> {
        Ok(self.root_command(args).output()?)
    }

    /// `error` with the end of this daemon's log attached: what a failed suite prints.
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        error.context(format!("ssp serve's log ends:\n{}", crate::daemon::tail(&self.log(), 80)))
    }

    /// The CLI with the config file `config` (made by `ssp login`), ready to run.
    pub fn cli_command(&self, config: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args).env("SSP_CONFIG", config).env_remove("SSP_URL").env_remove("SSP_TOKEN").stdin(Stdio::null());
        command
    }

    /// Runs the CLI with the config file `config` (made by `ssp login`).
    pub fn cli(&self, config: &Path, args: &[&str]) -> Result<Output> {
        Ok(self.cli_command(config, args).output()?)
    }

    /// Makes user `name` (keys from `key_file` if given) and logs a CLI in as them over
    /// HTTPS with the pinned certificate; returns that CLI's config file.
    pub fn user(&self, name: &str, extra: &[&str]) -> Result<PathBuf> {
        let mut args = vec!["user", "add", name];
        args.extend_from_slice(extra);
        let added = self.root_cli(&args)?;
        if !added.status.success() {
            bail!("user add {name}: {}", String::from_utf8_lossy(&added.stderr));
        }
        let token = self.root_cli(&["--json", "token", "create", "--user", name])?;
        if !token.status.success() {
            bail!("token create: {}", String::from_utf8_lossy(&token.stderr));
        }
        let token: serde_json::Value = serde_json::from_slice(&token.stdout).context("token --json")?;
        let secret = token["token"].as_str().context("no token in the answer")?.to_string();
        let config = self.dir.join(format!("{name}.toml"));
        let https = self.https.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let cert = self.cert();
        let login =
            self.cli(&config, &["login", &https, "--token", &secret, "--ca", cert.to_str().context("path")?])?;
        if !login.status.success() {
            bail!("login as {name}: {}", String::from_utf8_lossy(&login.stderr));
        }
        std::fs::write(self.dir.join(format!("{name}.token")), &secret)?;
        Ok(config)
    }

    /// The token `user` made in [`Platform::user`].
    pub fn token(&self, user: &str) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.join(format!("{user}.token")))?)
    }

    /// A raw API request over the local socket, with `token` if given (else as host root).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<Answer> {
        let client = reqwest::Client::builder().unix_socket(self.socket()).build()?;
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = client.request(method, format!("http://ssp{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok(Answer { status, body: response.text().await? })
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill();
    }
}
