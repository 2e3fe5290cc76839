//! ssp's daemon: the HTTP API over TLS and a local unix socket, authentication, and the
//! reconciler that keeps LXD at the desired state recorded in SQLite.
//!
//! Handlers parse, authorize and record intent; the reconciler ([`reconcile`]) does the LXD
//! work. The instance shape ssp gives LXD is computed in [`instance`] from the stored row
//! alone. This crate must not hold policy that can be a pure function (that is `ssp-core`)
//! nor SQL (that is `ssp-store`).

pub mod admission;
pub mod api;
pub mod archive;
pub mod attachments;
pub mod auth;
pub mod config;
pub mod convert;
pub mod db;
pub mod departures;
pub mod desktop;
pub mod error;
pub mod events;
pub mod gateway;
pub mod gpu;
pub mod guest;
pub mod instance;
pub mod portal;
pub mod reconcile;
pub mod storage;
pub mod terminal;
pub mod tls;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

pub use config::Settings;

use crate::auth::Transport;
use crate::db::Db;
use crate::instance::Layout;
use crate::reconcile::{Reconciler, ReconcilerHandle};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The state database.
    pub db: Db,
    /// The LXD daemon.
    pub lxd: ssp_lxd::Client,
    /// Checked configuration.
    pub settings: Arc<Settings>,
    /// Wakes the reconciler; reads its problems.
    pub reconciler: ReconcilerHandle,
    /// Runs a pass on demand (`POST /api/v1/reconcile`).
    pub reconciler_pass: Reconciler,
    /// The API certificate's fingerprint.
    pub tls_fingerprint: String,
    /// The host's GPUs and their telemetry.
    pub gpus: gpu::Gpus,
    /// Stages shares and homes, runs snapshot schedules.
    pub storage: storage::Worker,
    /// The SSH gateway, when it is on.
    pub gateway: Option<ssp_api::GatewayInfo>,
    /// The web portal's sign-in throttle and listener port.
    pub web: web::Web,
    /// The web terminal's tickets and sessions.
    pub terminals: terminal::Terminals,
    /// What changed, for the portal's live streams.
    pub events: events::Events,
    /// Desktop sessions, their sockets and tickets.
    pub desktops: Arc<desktop::Desktops>,
}

/// The peer address of an HTTPS request (put on each request by the TLS listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state folder, socket or a listener could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The state database could not be opened.
    #[error("opening the state database: {0}")]
    Store(#[from] ssp_store::Error),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The LXD client could not be made.
    #[error("LXD: {0}")]
    Lxd(#[from] ssp_lxd::Error),
    /// The GPU inventory could not be set up.
    #[error("GPUs: {0}")]
    Gpu(#[from] ssp_gpu::Error),
    /// The SSH gateway could not be set up.
    #[error(transparent)]
    Gateway(#[from] ssp_gateway::Error),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// The id that tags this installation's LXD objects (`user.ssp.platform`), made once.
fn platform_id(state_dir: &Path) -> Result<String, ServeError> {
    let path = state_dir.join("platform-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(format!("reading {}", path.display()))(e)),
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| io_error("drawing a platform id")(std::io::Error::other(e.to_string())))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, format!("{id}\n")).map_err(io_error(format!("writing {}", temporary.display())))?;
    std::fs::rename(&temporary, &path).map_err(io_error(format!("writing {}", path.display())))?;
    Ok(id)
}

/// Where the daemon listens, written to `state_dir/listening.json` once it accepts
/// connections (scripts and tests wait for it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Listening {
    /// `https://ADDRESS:PORT`, if TCP is on.
    pub https: Option<String>,
    /// The unix socket.
    pub socket: PathBuf,
    /// The certificate clients pin.
    pub tls_cert: PathBuf,
    /// Its SHA-256 fingerprint.
    pub tls_fingerprint: String,
    /// The SSH gateway's address and host key, if it is on.
    #[serde(default)]
    pub gateway: Option<ssp_api::GatewayInfo>,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let state_dir = settings.raw.state_dir.clone();
    std::fs::create_dir_all(&state_dir).map_err(io_error(format!("creating {}", state_dir.display())))?;
    set_mode(&state_dir, 0o700)?;
    let store = ssp_store::Store::open(&settings.database_path())?;
    let db = Db::new(store);
    let platform = platform_id(&state_dir)?;
    let lxd = match &settings.raw.lxd.socket {
        Some(socket) => ssp_lxd::Client::new(socket)?,
        None => ssp_lxd::Client::from_env()?,
    };
    // Only a greeting: a busy or absent LXD must not keep the API from coming up.
    match tokio::time::timeout(Duration::from_secs(5), lxd.server()).await {
        Ok(Ok(server)) => {
            tracing::info!("LXD {} at {}", server.environment.server_version, lxd.socket().display())
        }
        Ok(Err(e)) => tracing::warn!("LXD is not reachable yet ({e}); the reconciler will keep trying"),
        Err(_) => tracing::warn!("LXD did not answer within 5 s; the reconciler will keep trying"),
    }
    let identity = tls::load_or_create(
        settings.raw.api.tls_cert.as_deref(),
        settings.raw.api.tls_key.as_deref(),
        &state_dir,
        &settings.raw.api.tls_names,
    )?;
    let gpus = gpu::Gpus::open(&settings, &lxd).await?;
    let records = gpus.records();
    db.run(move |store| store.sync_gpus(&records)).await?;
    let platform_for_storage = platform.clone();
    let layout = Layout {
        pool: settings.pool.as_str().into(),
        network: settings.network.as_str().into(),
        platform,
        gpu: gpus.plumbing(),
        gateway_devices: ssp_gateway::LiveDevices::default(),
        max_processes: settings.raw.defaults.max_processes,
    };
    let gateway_devices = layout.gateway_devices.clone();
    let reconciler = Reconciler::new(db.clone(), lxd.clone(), layout, settings.raw.reconcile.parallelism);
    // The gateway's devices are written by the reconciler's executor, like all of ssp's
    // instance config: the gateway registers what it wants and waits for this.
    let writer = reconciler.clone();
    gateway_devices.set_writer(Arc::new(move |instance: String| {
        let writer = writer.clone();
        Box::pin(async move { writer.apply_devices(&instance).await.map_err(|e| e.to_string()) })
    }));
    let gateway_settings = settings.raw.gateway.settings(&state_dir);
    let desktop_sockets = Arc::new(ssp_gateway::desktop::DesktopSockets::new(
        lxd.clone(),
        gateway_devices.clone(),
        gateway_settings.socket_dir.clone(),
        gateway_settings.sshd_socket_linger,
    ));
    let desktops = Arc::new(desktop::Desktops::new(
        lxd.clone(),
        desktop_sockets,
        Duration::from_secs(settings.raw.desktop.idle_timeout_secs),
    ));
    let gateway =
        match settings.raw.gateway.address().map_err(|e| io_error("gateway.listen")(std::io::Error::other(e)))? {
            Some(address) => {
                let backend = gateway::StoreBackend::new(db.clone(), reconciler.handle(), Arc::clone(&desktops));
                Some(
                    ssp_gateway::Gateway::bind(address, gateway_settings, backend, lxd.clone(), gateway_devices)
                        .await?,
                )
            }
            None => None,
        };
    let gateway_info = match &gateway {
        Some(gateway) => Some(ssp_api::GatewayInfo {
            listen: gateway.local_addr().map_err(io_error("reading the gateway's address"))?.to_string(),
            host_key: gateway.host_key().public_line(),
            host_key_fingerprint: gateway.host_key().fingerprint(),
        }),
        None => None,
    };
    // The web terminal starts shells as the gateway does, and honours its `session_path`.
    let terminal_attach = match settings.raw.gateway.settings(&state_dir).session_path {
        ssp_gateway::SessionPath::Auto => match ssp_lxd::Attach::discover(&lxd).await {
            Ok(attach) => Some(Arc::new(attach)),
            Err(why) => {
                tracing::warn!("web terminal: shells go through LXD's exec websocket: {why}");
                None
            }
        },
        ssp_gateway::SessionPath::LxdExec => None,
    };
    let terminals = terminal::Terminals::new(db.clone(), lxd.clone(), terminal_attach, terminal::GRACE);
    let settings = Arc::new(settings);
    let (state_db, state_lxd) = (db.clone(), lxd.clone());
    let db_for_desktops = db.clone();
    let state = AppState {
        db,
        lxd,
        settings: Arc::clone(&settings),
        reconciler: reconciler.handle(),
        reconciler_pass: reconciler.clone(),
        tls_fingerprint: identity.fingerprint.clone(),
        gpus: gpus.clone(),
        storage: storage::Worker::default(),
        gateway: gateway_info.clone(),
        web: web::Web::default(),
        terminals: terminals.clone(),
        events: events::Events::default(),
        desktops: Arc::clone(&desktops),
    };
    let web_state = state.web.clone();
    let cleanup = api::images::remove_unrecorded(&state.db, &state.lxd, &platform_for_storage);
    if tokio::time::timeout(Duration::from_secs(60), cleanup).await.is_err() {
        tracing::warn!("LXD did not answer in 60 s: unrecorded images are looked for at the next start");
    }
    storage::start(&settings, &state, &platform_for_storage);
    let departures_state = state.clone();
    let router = api::router(state);

    let socket_path = settings.raw.api.socket.clone();
    if let Some(parent) = socket_path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(format!("creating {}", parent.display())))?;
    }
    match std::fs::remove_file(&socket_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(format!("removing the old {}", socket_path.display()))(e))
        }
        _ => {}
    }
    let unix = UnixListener::bind(&socket_path).map_err(io_error(format!("listening on {}", socket_path.display())))?;
    set_mode(&socket_path, 0o600)?;

    let tcp = match settings.listen {
        Some(address) => Some(TcpListener::bind(address).await.map_err(io_error(format!("listening on {address}")))?),
        None => None,
    };
    let https = match &tcp {
        Some(listener) => {
            let address = listener.local_addr().map_err(io_error("reading the listening address"))?;
            let _ = web_state.https_port.set(address.port());
            Some(format!("https://{address}"))
        }
        None => None,
    };
    let listening = Listening {
        https: https.clone(),
        socket: socket_path.clone(),
        tls_cert: identity.cert_path.clone(),
        tls_fingerprint: identity.fingerprint.clone(),
        gateway: gateway_info.clone(),
    };

    if let Some(gateway) = gateway {
        tokio::spawn(gateway.run());
    }
    tokio::spawn(gpus.run(state_db, state_lxd, reconciler.handle()));
    tokio::spawn(terminals.watch());
    tokio::spawn(desktops.sockets().reap());
    tokio::spawn(Arc::clone(&desktops).sweep());
    tokio::spawn(desktop::adopt_running(Arc::clone(&desktops), db_for_desktops));
    tokio::spawn(departures::watch(departures_state));
    tokio::spawn(reconciler.run(Duration::from_secs(settings.raw.reconcile.interval_secs)));
    tokio::spawn(accept_unix(unix, router.clone()));
    if let Some(tcp) = tcp {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&identity.config));
        tokio::spawn(accept_tls(tcp, acceptor, router));
    }
    let listening_path = state_dir.join("listening.json");
    let text = serde_json::to_string_pretty(&listening).unwrap_or_default();
    // Written whole, then renamed: whoever waits for the file never reads half of it.
    let partial = listening_path.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &listening_path))
        .map_err(io_error(format!("writing {}", listening_path.display())))?;
    if let Some(gateway) = &gateway_info {
        tracing::info!("SSH gateway on {} (host key {})", gateway.listen, gateway.host_key_fingerprint);
    }
    tracing::info!(
        "ssp {} serving on {} and {} (certificate SHA-256 {})",
        env!("CARGO_PKG_VERSION"),
        https.as_deref().unwrap_or("no TCP"),
        socket_path.display(),
        identity.fingerprint
    );

    shutdown_signal().await;
    tracing::info!("stopping");
    std::fs::remove_file(&listening_path).ok();
    Ok(())
}

/// Replaces the state database with `backup` (checked first: a sound ssp database of a
/// schema this version knows); the daemon must not be running. Returns the schema version.
pub fn restore_state(settings: &Settings, backup: &Path) -> Result<i64, ServeError> {
    let target = settings.database_path();
    if let Some(folder) = target.parent() {
        std::fs::create_dir_all(folder).map_err(io_error(format!("creating {}", folder.display())))?;
    }
    Ok(ssp_store::Store::restore(backup, &target)?)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("setting the mode of {}", path.display())))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

async fn accept_unix(listener: UnixListener, router: Router) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting on the unix socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The kernel vouches for the peer's uid; without it the connection is anonymous.
        let uid = match stream.peer_cred() {
            Ok(credentials) => credentials.uid(),
            Err(_) => u32::MAX,
        };
        let router = router.clone();
        tokio::spawn(serve_connection(stream, router, Transport::Local { uid }, None));
    }
}

async fn accept_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, router: Router) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting TCP connections: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A client that never finishes its handshake must not hold a task forever.
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, router, Transport::Tls, Some(PeerAddr(peer))).await,
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn serve_connection<I>(io: I, router: Router, transport: Transport, peer: Option<PeerAddr>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(transport);
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        router.clone().oneshot(request)
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!("connection ended: {e}");
    }
}
