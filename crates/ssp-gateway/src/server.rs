//! Connections: the russh server configuration (modern algorithms only, public keys only),
//! authentication against the keys the backend holds, the limits, and the channels, which
//! [`crate::session`] runs.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Preferred};
use ssp_core::gateway::{self as rules, Login, Refusal};
use tokio::net::{TcpListener, TcpStream};

use crate::agent::{Agent, Back};
use crate::devices::LiveDevices;
use crate::limits::{Limits, Slot, Startup};
use crate::session::{self, Context};
use crate::sshd::SshdSockets;
use crate::{Backend, Ciphers, HostKey, Settings, Target};

/// What every connection shares.
pub(crate) struct Shared<B: Backend> {
    pub(crate) settings: Settings,
    pub(crate) config: Arc<russh::server::Config>,
    pub(crate) backend: B,
    pub(crate) lxd: ssp_lxd::Client,
    pub(crate) limits: Arc<Limits>,
    pub(crate) live: LiveDevices,
    pub(crate) sshd: Arc<SshdSockets>,
    /// LXD's own way into containers without its exec websocket, where it can be used.
    pub(crate) attach: Option<Arc<ssp_lxd::Attach>>,
}

impl<B: Backend> Shared<B> {
    pub(crate) fn new(
        settings: Settings,
        host_key: &HostKey,
        backend: B,
        lxd: ssp_lxd::Client,
        live: LiveDevices,
        attach: Option<Arc<ssp_lxd::Attach>>,
    ) -> Self {
        let config = russh::server::Config {
            server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-ssp_gateway")),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: settings.auth_rejection_time,
            // OpenSSH probes with "none" first to learn the methods: answer that at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![host_key.private().clone()],
            max_auth_attempts: settings.max_auth_attempts,
            // The gateway's own idle rule counts bytes both ways (see `watch`); russh's counts
            // only what the client sends and would cut a session that only prints.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            preferred: preferred(settings.ciphers),
            ..Default::default()
        };
        let sshd = Arc::new(SshdSockets::new(
            lxd.clone(),
            live.clone(),
            settings.socket_dir.clone(),
            settings.sshd_socket_linger,
        ));
        Self {
            settings,
            config: Arc::new(config),
            backend,
            lxd,
            limits: Arc::new(Limits::default()),
            live,
            sshd,
            attach,
        }
    }
}

/// Modern algorithms only: hybrid post-quantum and curve25519 key exchange (strict kex is
/// always on), AEAD ciphers, encrypt-then-MAC SHA-2 MACs, no SHA-1 anywhere.
fn preferred(ciphers: Ciphers) -> Preferred {
    use russh::{cipher, kex, mac};
    static ALL: [cipher::Name; 3] = [cipher::CHACHA20_POLY1305, cipher::AES_256_GCM, cipher::AES_128_GCM];
    static AES_GCM: [cipher::Name; 2] = [cipher::AES_256_GCM, cipher::AES_128_GCM];
    let cipher: &'static [cipher::Name] = if ciphers.offers_chacha20() { &ALL } else { &AES_GCM };
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Borrowed(&[
            Algorithm::Ed25519,
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
            Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
            Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
        ]),
        cipher: Cow::Borrowed(cipher),
        mac: Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
    }
}

pub(crate) async fn accept<B: Backend>(listener: TcpListener, shared: Arc<Shared<B>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("gateway: accepting connections: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(startup) = shared.limits.startup(peer.ip(), shared.settings.max_startups_per_source) else {
            tracing::debug!(%peer, "gateway: too many unauthenticated connections from this address; closed");
            drop(stream);
            continue;
        };
        tokio::spawn(connection(Arc::clone(&shared), stream, peer, startup));
    }
}

/// Seconds since the epoch, for activity stamps.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What a connection's watcher reads: whether it authenticated, with which key, and when
/// bytes last moved.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub(crate) authenticated: AtomicBool,
    pub(crate) last: AtomicU64,
    /// Open channels (commands, sessions, forwards) of this connection: while any is open,
    /// the connection is active, quiet or not.
    pub(crate) running: AtomicUsize,
}

/// One running command or forward, counted in [`Activity::running`] while it lives.
pub(crate) struct Running(Arc<Activity>);

impl Running {
    pub(crate) fn new(activity: &Arc<Activity>) -> Self {
        activity.running.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    pub(crate) fn touch(&self) {
        self.last.store(now_secs(), Ordering::Relaxed);
    }
}

async fn connection<B: Backend>(shared: Arc<Shared<B>>, stream: TcpStream, peer: SocketAddr, startup: Startup) {
    let activity = Arc::new(Activity::default());
    activity.touch();
    let (identity_tx, identity_rx) = tokio::sync::oneshot::channel();
    let handler = Connection {
        shared: Arc::clone(&shared),
        peer,
        login: None,
        identity_tx: Some(identity_tx),
        activity: Arc::clone(&activity),
        refusals: 0,
        penalized: false,
        startup: Some(startup),
        slot: None,
        forwards: std::collections::HashMap::new(),
    };
    let pre_auth = shared.settings.pre_auth_timeout;
    let running =
        match tokio::time::timeout(pre_auth, russh::server::run_stream(Arc::clone(&shared.config), stream, handler))
            .await
        {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "gateway: connection failed before key exchange: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "gateway: no SSH greeting within {pre_auth:?}");
                return;
            }
        };
    let handle = running.handle();
    let watcher = tokio::spawn(watch(Arc::clone(&shared), handle, activity, identity_rx, peer));
    if let Err(e) = running.await {
        tracing::debug!(%peer, "gateway: connection ended: {e}");
    }
    watcher.abort();
}

/// Closes the connection when it has not authenticated in time, when its key or user stops
/// being valid, or when it has been idle too long.
async fn watch<B: Backend>(
    shared: Arc<Shared<B>>,
    handle: russh::server::Handle,
    activity: Arc<Activity>,
    identity: tokio::sync::oneshot::Receiver<(Login, PublicKey)>,
    peer: SocketAddr,
) {
    let settings = &shared.settings;
    let (login, key) = match tokio::time::timeout(settings.pre_auth_timeout, identity).await {
        Ok(Ok(identity)) => identity,
        Ok(Err(_)) => return,
        Err(_) => {
            tracing::info!(%peer, "gateway: not authenticated within {:?}; closing", settings.pre_auth_timeout);
            disconnect(&handle, "authentication took too long").await;
            return;
        }
    };
    let mut interval = tokio::time::interval(settings.revalidate_interval);
    loop {
        interval.tick().await;
        match shared.backend.keys(&login.owner).await {
            Ok(Some(lines)) if key_matches(&lines, &key) => {}
            Ok(_) => {
                tracing::info!(%peer, user = %login.owner, "gateway: key removed or user disabled; closing");
                disconnect(&handle, "your key was removed or your account disabled").await;
                return;
            }
            Err(e) => tracing::warn!("gateway: checking {}'s keys: {e}", login.owner),
        }
        if let Some(idle) = settings.idle_timeout {
            // Idle means nothing running and no byte either way: a quiet job or an open shell
            // is never cut (dead peers are found by keepalives instead).
            let last = activity.last.load(Ordering::Relaxed);
            let running = activity.running.load(Ordering::Relaxed);
            if running == 0 && now_secs().saturating_sub(last) >= idle.as_secs() {
                tracing::info!(%peer, user = %login.owner, "gateway: idle for {idle:?}; closing");
                disconnect(&handle, "idle for too long").await;
                return;
            }
        }
    }
}

async fn disconnect(handle: &russh::server::Handle, why: &str) {
    let _ = handle.disconnect(russh::Disconnect::ByApplication, format!("ssp: {why}"), "en".into()).await;
}

/// Whether `key` is one of the OpenSSH `lines`: compared by the key itself (type and
/// blob), not by a comment or a fingerprint string.
pub(crate) fn key_matches(lines: &[String], key: &PublicKey) -> bool {
    lines
        .iter()
        .filter_map(|line| PublicKey::from_openssh(line.trim()).ok())
        .any(|stored| stored.key_data() == key.key_data())
}

/// One client connection.
pub(crate) struct Connection<B: Backend> {
    shared: Arc<Shared<B>>,
    peer: SocketAddr,
    login: Option<Login>,
    identity_tx: Option<tokio::sync::oneshot::Sender<(Login, PublicKey)>>,
    activity: Arc<Activity>,
    refusals: u32,
    penalized: bool,
    startup: Option<Startup>,
    slot: Option<Slot>,
    /// The client's `-R` forwards, by (address, port).
    forwards: std::collections::HashMap<(String, u32), Agent>,
}

impl<B: Backend> Drop for Connection<B> {
    fn drop(&mut self) {
        if self.login.is_none() && self.refusals > 0 {
            self.shared.limits.failed(self.peer.ip());
        }
        // The connection is gone: its -R listeners go too.
        for (_, forward) in self.forwards.drain() {
            tokio::spawn(forward.close());
        }
    }
}

/// Why a connection's handler stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

impl<B: Backend> Connection<B> {
    fn reject(&mut self) -> Auth {
        self.refusals += 1;
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    /// Once per connection: a source with recent failures waits before its keys are looked at.
    async fn penalty(&mut self) {
        if std::mem::replace(&mut self.penalized, true) {
            return;
        }
        let failures = self.shared.limits.failures(self.peer.ip());
        let wait = rules::source_penalty(failures, self.shared.settings.max_source_penalty);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether `key` may log in as `user`: a valid login of an enabled user holding the key,
    /// and — when the login names a container — one of theirs. Anything else is the same
    /// refusal, so a login never tells whether a user or container exists.
    async fn check(&self, user: &str, key: &PublicKey) -> Result<Login, String> {
        let login = rules::parse_login(user).map_err(|e| e.to_string())?;
        let lines = match self.shared.backend.keys(&login.owner).await {
            Ok(Some(lines)) => lines,
            Ok(None) => return Err(format!("no enabled user {}", login.owner)),
            Err(e) => return Err(format!("backend: {e}")),
        };
        if !key_matches(&lines, key) {
            return Err(format!("key {} is not {}'s", key.fingerprint(HashAlg::Sha256), login.owner));
        }
        if let Some(container) = &login.container {
            let targets = self.shared.backend.containers(&login.owner).await.map_err(|e| format!("backend: {e}"))?;
            let names: Vec<_> = targets.iter().map(|t| t.name.clone()).collect();
            rules::choose_container(&login.owner, Some(container), &names).map_err(|e| e.to_string())?;
        }
        Ok(login)
    }

    fn context(&self, session: &Session) -> Option<Context<B>> {
        let login = self.login.clone()?;
        Some(Context {
            backend: self.shared.backend.clone(),
            lxd: self.shared.lxd.clone(),
            login,
            source: self.peer.to_string(),
            activity: Arc::clone(&self.activity),
            handle: session.handle(),
            socket_dir: self.shared.settings.socket_dir.clone(),
            live: self.shared.live.clone(),
            sshd: Arc::clone(&self.shared.sshd),
            attach: self.shared.attach.clone(),
        })
    }
}

impl<B: Backend> russh::server::Handler for Connection<B> {
    type Error = HandlerError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    /// Only says whether the key is worth a signature; identity comes from `auth_publickey`.
    async fn auth_publickey_offered(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        self.penalty().await;
        match self.check(user, key).await {
            Ok(_) => Ok(Auth::Accept),
            Err(why) => {
                tracing::debug!(peer = %self.peer, "gateway: key offered for {user:?} refused: {why}");
                Ok(self.reject())
            }
        }
    }

    /// The signature is verified: this is where a login is decided.
    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        let login = match self.check(user, key).await {
            Ok(login) => login,
            Err(why) => {
                tracing::info!(peer = %self.peer, "gateway: login {user:?} refused: {why}");
                return Ok(self.reject());
            }
        };
        let cap = self.shared.settings.max_connections_per_user;
        let Some(slot) = self.shared.limits.take_slot(login.owner.as_str(), cap) else {
            tracing::warn!(peer = %self.peer, "gateway: {} already has {cap} connections; refused", login.owner);
            return Ok(self.reject());
        };
        tracing::info!(peer = %self.peer, user = %login.owner, container = ?login.container.as_ref().map(|c| c.as_str()),
            "gateway: logged in with {}", key.fingerprint(HashAlg::Sha256));
        self.shared.limits.succeeded(self.peer.ip());
        self.slot = Some(slot);
        self.startup = None;
        self.activity.authenticated.store(true, Ordering::Relaxed);
        if let Some(tx) = self.identity_tx.take() {
            let _ = tx.send((login.clone(), key.clone()));
        }
        self.login = Some(login);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(context) = self.context(session) else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        reply.accept().await;
        tokio::spawn(session::run_session(channel, context));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(context) = self.context(session) else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let target = match rules::forward_target(&context.login, host, port) {
            Ok(target) => resolve(&context, target.container.as_ref()).await.map(|t| (t, target.to)),
            Err(refusal) => Err(refusal.to_string()),
        };
        match target {
            // The forward answers the open itself: a connection that fails is refused with
            // the reason, as sshd does ("connect failed: Connection refused").
            Ok((target, rules::Reach::Port(port))) => {
                tokio::spawn(session::run_forward(channel, reply, context, target, port));
            }
            Ok((target, rules::Reach::Desktop)) => {
                tokio::spawn(session::run_desktop(channel, reply, context, target));
            }
            Err(why) => {
                tracing::info!(peer = %self.peer, user = %context.login.owner, "gateway: forward to {host}:{port} refused: {why}");
                reply.reject(ChannelOpenFailure::Other { code: 2, reason: format!("ssp: {why}") }).await;
            }
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if rules::accepts_env(name) {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    /// `-R [ADDRESS:]PORT:…`: a listener on `127.0.0.1:PORT` inside the login's container
    /// (never on its other addresses) whose connections come back as `forwarded-tcpip`.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(context) = self.context(session) else { return Ok(false) };
        let Ok(inside_port) = u16::try_from(*port) else { return Ok(false) };
        if inside_port == 0 || !matches!(address, "" | "localhost" | "127.0.0.1" | "0.0.0.0" | "*" | "::1") {
            return Ok(false);
        }
        let target = match resolve(&context, None).await {
            Ok(target) => target,
            Err(why) => {
                tracing::info!(peer = %self.peer, "gateway: -R {address}:{port} refused: {why}");
                return Ok(false);
            }
        };
        let back = Back::Tcp { address: address.to_string(), port: inside_port };
        let opened = Agent::open(
            &context.lxd,
            &context.live,
            &target.instance,
            &context.socket_dir,
            target.exec.uid,
            context.handle,
            back,
        )
        .await;
        match opened {
            Ok(forward) => {
                tracing::info!(peer = %self.peer, user = %context.login.owner, container = %target.name, "gateway: -R on {}", forward.inside);
                if let Some(old) = self.forwards.insert((address.to_string(), *port), forward) {
                    old.close().await;
                }
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, "gateway: -R {address}:{port}: {e}");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        match self.forwards.remove(&(address.to_string(), port)) {
            Some(forward) => {
                forward.close().await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Agent forwarding is set up by the session when its command starts.
    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(self.login.is_some())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }
}

/// The container a channel goes to: the one named, or the login's own (or default) one;
/// it must be running. Missing and foreign read the same (the names come from the user's
/// own list only).
pub(crate) async fn resolve<B: Backend>(
    context: &Context<B>,
    named: Option<&ssp_core::names::Name>,
) -> Result<Target, String> {
    let owned = context.backend.containers(&context.login.owner).await.map_err(|e| format!("backend: {e}"))?;
    let names: Vec<_> = owned.iter().map(|t| t.name.clone()).collect();
    let wanted = named.or(context.login.container.as_ref());
    let chosen =
        rules::choose_container(&context.login.owner, wanted, &names).map_err(|e: Refusal| e.to_string())?.clone();
    let target = owned
        .into_iter()
        .find(|t| t.name == chosen)
        .ok_or_else(|| Refusal::NoSuchContainer(chosen.to_string()).to_string())?;
    if !target.running {
        return Err(format!(
            "container {} is not running; start it with `ssp container start {}`",
            target.name, target.name
        ));
    }
    if target.set_up {
        return Ok(target);
    }
    // Just made (or copied, or restored): its owner's account is being set up. A login now
    // would find no such user, so wait for it a while.
    let deadline = tokio::time::Instant::now() + SET_UP_PATIENCE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let owned = context.backend.containers(&context.login.owner).await.map_err(|e| format!("backend: {e}"))?;
        match owned.into_iter().find(|t| t.name == chosen) {
            Some(now) if now.set_up && now.running => return Ok(now),
            Some(now) if now.running => {}
            _ => return Err(Refusal::NoSuchContainer(chosen.to_string()).to_string()),
        }
    }
    Err(format!(
        "container {} is still being set up (its owner's account and keys); try again in a minute, \
         and see `ssp container show {}` if it stays so",
        target.name, target.name
    ))
}

/// How long a channel waits for a container whose owner's account is still being set up.
const SET_UP_PATIENCE: Duration = Duration::from_secs(90);
