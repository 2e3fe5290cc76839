//! Entering a local container the way LXD's own exec does, without LXD's exec websocket.
//!
//! LXD runs every exec as `lxd forkexec NAME LXCPATH CONFIG CWD UID GID CORESCHED -- env
//! K=V… -- cmd ARGS…`, with the command's stdin, stdout and stderr at descriptors 3, 4 and 5
//! and a status pipe at 6 that receives the attached process's pid. `forkexec` is liblxc's
//! attach with the container's own generated `lxc.conf`: every namespace, the container's
//! cgroup, its seccomp policy, capabilities and LSM label, descriptors above 6 closed, the
//! environment cleared; it exits with the command's status. LXD then copies bytes between
//! those descriptors and websockets, reading each frame whole into fresh buffers (3–4.5
//! CPU-seconds per GB on LXD 5.0.2, and a round trip through its event loop per sftp request).
//!
//! [`Attach`] runs the same program with the same arguments and the same environment defaults
//! itself, and keeps the other ends of those descriptors: the confinement is LXD's own by
//! construction (the same binary, the same liblxc call, the same config file), and the bytes
//! go straight between a pipe, or a pty in the container's own devpts, and the caller.
//! [`Attach::connect`] opens a TCP connection from the container's own loopback (a socket made
//! in its network namespace), for forwards that need no process inside at all.
//!
//! It is usable only where LXD's executable and folders are this host's (the daemon's pid seen
//! through its unix socket, ssp running as root in the same pid namespace), for LXD versions
//! whose `forkexec` arguments are known, and for containers LXD itself would not re-execute
//! from a memfd (privileged ones, or maps that include host root: CVE-2019-5736). Anything
//! else is [`Unavailable`]: nothing ran, and the caller uses [`Client::exec`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use command_fds::{CommandFdExt, FdMapping};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::Result;
use crate::exec::{as_sent, spawn_failure, ExecExit, ExecOptions};

/// Why a command cannot be started (or a connection opened) this way. Nothing has run: the
/// caller can use LXD's exec instead.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

fn unavailable(what: impl std::fmt::Display) -> Unavailable {
    Unavailable(what.to_string())
}

/// How LXD's `forkexec` takes its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    /// LXD 5.0 to 6.6: `… UID GID CORESCHED -- env … -- cmd …`.
    WithCoreScheduling,
    /// LXD 6.7 and later: `… UID GID -- env … -- cmd …`.
    WithoutCoreScheduling,
}

/// The `forkexec` arguments of a daemon (`server`, `server_version` from `GET /1.0`), where
/// they are known from LXD's source (`lxd/main_forkexec.go`); Incus and unknown versions: none.
fn signature(server: &str, version: &str) -> Option<Signature> {
    if server != "lxd" {
        return None;
    }
    let mut numbers = version.split('.').map(|part| part.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = numbers.next().flatten().unwrap_or(0);
    match (major, minor) {
        (5, _) | (6, 0..=6) => Some(Signature::WithCoreScheduling),
        (6, _) => Some(Signature::WithoutCoreScheduling),
        _ => None,
    }
}

/// Where LXD keeps containers (liblxc's `lxcpath`) and their logs (with `lxc.conf`), from the
/// daemon's `LXD_DIR` (LXD's `shared.VarPath` and `shared.LogPath`).
fn folders(lxd_dir: Option<&str>) -> (PathBuf, PathBuf) {
    match lxd_dir.filter(|dir| !dir.is_empty()) {
        Some(dir) => (Path::new(dir).join("containers"), Path::new(dir).join("logs")),
        None => (PathBuf::from("/var/lib/lxd/containers"), PathBuf::from("/var/log/lxd")),
    }
}

/// Whether LXD runs this container's commands from its own executable, as read from the
/// container's `lxc.conf`: it re-executes from a memfd instead (CVE-2019-5736) for a
/// privileged container (no id map) and for a map that includes host root.
fn attachable(lxc_conf: &str) -> std::result::Result<(), &'static str> {
    let mut maps = 0;
    for line in lxc_conf.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() != "lxc.idmap" {
            continue;
        }
        maps += 1;
        let fields: Vec<u64> = value.split_whitespace().skip(2).filter_map(|f| f.parse().ok()).collect();
        match fields[..] {
            [host, count] if host == 0 && count > 0 => return Err("its id map includes host root"),
            [_, _] => {}
            _ => return Err("its id map is not one ssp can read"),
        }
    }
    if maps == 0 {
        return Err("it is privileged (no id map)");
    }
    Ok(())
}

/// The environment LXD's exec handler gives a command (`lxd/instance_exec.go`): the request's,
/// then `PATH` (with `/snap/bin` or NixOS's path where the container has them), `HOME` and
/// `USER` for root, and `LANG`, where the request has none.
fn environment(requested: &BTreeMap<String, String>, uid: u32, extra_paths: &[&str]) -> Vec<String> {
    let mut environment = requested.clone();
    environment.entry("PATH".into()).or_insert_with(|| {
        let mut path = String::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        for extra in extra_paths {
            path.push(':');
            path.push_str(extra);
        }
        path
    });
    if uid == 0 {
        environment.entry("HOME".into()).or_insert_with(|| "/root".into());
        environment.entry("USER".into()).or_insert_with(|| "root".into());
    }
    environment.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
    environment.into_iter().map(|(key, value)| format!("{key}={value}")).collect()
}

/// A process's start time (field 22 of `/proc/PID/stat`, after the command name, which may
/// itself hold spaces and parentheses): with the pid, it names one process for good.
fn start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The real uid and gid of a process, from its `/proc/PID/status`.
fn real_ids(status: &str) -> Option<(u32, u32)> {
    let id = |key: &str| -> Option<u32> {
        let line = status.lines().find(|line| line.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((id("Uid:")?, id("Gid:")?))
}

/// Whether an instance name can be a path component here (LXD's names are letters, digits and
/// dashes; ssp's are checked long before, this is the last line).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
}

/// How long `forkexec` may take to report the attached process.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes read from a command's output at once.
const CHUNK: usize = 64 * 1024;

/// `DEVPTS_SUPER_MAGIC`: the pty must come from a devpts instance.
const DEVPTS_MAGIC: i64 = 0x1cd1;

/// A container's init process, as LXD reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Init {
    pid: i32,
    started: u64,
}

impl Init {
    /// Whether `pid` is still that process.
    fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| start_time(&stat))
            .is_some_and(|started| started == self.started)
    }
}

/// Runs commands in this host's LXD containers as LXD's exec does, without its websocket
/// (see the module's documentation). Cheap to share.
#[derive(Debug)]
pub struct Attach {
    client: Client,
    program: PathBuf,
    signature: Signature,
    lxc_path: PathBuf,
    log_dir: PathBuf,
    inits: Mutex<HashMap<String, Init>>,
}

impl Attach {
    /// Finds LXD's executable and folders through `client`'s socket; [`Unavailable`] with the
    /// reason where this way cannot be used.
    pub async fn discover(client: &Client) -> std::result::Result<Self, Unavailable> {
        if !rustix::process::geteuid().is_root() {
            return Err(unavailable("ssp does not run as root"));
        }
        let server = client.server().await.map_err(|e| unavailable(format!("asking LXD what it is: {e}")))?;
        let environment = &server.environment;
        let signature = signature(&environment.server, &environment.server_version).ok_or_else(|| {
            unavailable(format!(
                "{} {} runs commands in a way ssp does not know",
                environment.server, environment.server_version
            ))
        })?;
        let socket = client.socket().to_path_buf();
        let pid = tokio::task::spawn_blocking(move || -> io::Result<i32> {
            let stream = std::os::unix::net::UnixStream::connect(&socket)?;
            let credentials = rustix::net::sockopt::socket_peercred(&stream)?;
            Ok(credentials.pid.as_raw_nonzero().get())
        })
        .await
        .map_err(unavailable)?
        .map_err(|e| unavailable(format!("finding LXD's process through its socket: {e}")))?;
        if pid <= 0 {
            return Err(unavailable("LXD's process is in another pid namespace"));
        }
        let program = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map_err(|e| unavailable(format!("LXD's executable (pid {pid}): {e}")))?;
        if !program.is_file() {
            return Err(unavailable(format!("LXD's executable {} is gone (upgraded?)", program.display())));
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .map_err(|e| unavailable(format!("LXD's environment (pid {pid}): {e}")))?;
        let lxd_dir = environ
            .split(|b| *b == 0)
            .filter_map(|entry| std::str::from_utf8(entry).ok())
            .find_map(|entry| entry.strip_prefix("LXD_DIR="))
            .map(str::to_owned);
        let (lxc_path, log_dir) = folders(lxd_dir.as_deref());
        if !lxc_path.is_dir() {
            return Err(unavailable(format!("LXD's container folder {} is not here", lxc_path.display())));
        }
        Ok(Self { client: client.clone(), program, signature, lxc_path, log_dir, inits: Mutex::new(HashMap::new()) })
    }

    /// The container's init process (LXD's word, kept while that process lives).
    async fn init(&self, instance: &str) -> std::result::Result<Init, Unavailable> {
        let known = self.inits.lock().unwrap_or_else(|e| e.into_inner()).get(instance).copied();
        if let Some(init) = known.filter(Init::alive) {
            return Ok(init);
        }
        let state = self.client.instance_state(instance).await.map_err(|e| unavailable(format!("{instance}: {e}")))?;
        let pid = i32::try_from(state.pid).ok().filter(|pid| *pid > 0);
        let pid = pid.ok_or_else(|| unavailable(format!("{instance} is not running ({})", state.status)))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(unavailable)?;
        let started = start_time(&stat).ok_or_else(|| unavailable(format!("cannot read /proc/{pid}/stat")))?;
        let init = Init { pid, started };
        let mut inits = self.inits.lock().unwrap_or_else(|e| e.into_inner());
        // Containers stopped or deleted since are forgotten here, so the map stays as large as
        // the set of running containers that had sessions.
        inits.retain(|_, known| known.alive());
        inits.insert(instance.to_owned(), init);
        Ok(init)
    }

    /// Starts `command` in `instance` as [`Client::exec`] would, with the same options.
    pub async fn exec(
        &self,
        instance: &str,
        command: &[String],
        options: ExecOptions,
    ) -> std::result::Result<crate::Exec, Unavailable> {
        if !plain_name(instance) {
            return Err(unavailable(format!("{instance:?} is not an instance name")));
        }
        let Some(program) = command.first() else { return Err(unavailable("empty command")) };
        let config = self.log_dir.join(instance).join("lxc.conf");
        let conf =
            tokio::fs::read_to_string(&config).await.map_err(|e| unavailable(format!("{}: {e}", config.display())))?;
        attachable(&conf).map_err(|why| unavailable(format!("{instance}: {why}")))?;
        let init = self.init(instance).await?;
        let freeze = format!("/sys/fs/cgroup/lxc.payload.{instance}/cgroup.freeze");
        if std::fs::read_to_string(freeze).is_ok_and(|frozen| frozen.trim() == "1") {
            return Err(unavailable(format!("{instance} is frozen")));
        }
        let (sent, uid, gid) = as_sent(command, &options);
        let extra_paths: Vec<&str> = [("snap", "/snap/bin"), ("etc/NIXOS", "/run/current-system/sw/bin")]
            .into_iter()
            .filter(|(marker, _)| Path::new(&format!("/proc/{}/root/{marker}", init.pid)).exists())
            .map(|(_, path)| path)
            .collect();
        let environment = environment(&options.environment, uid, &extra_paths);

        let (child_fds, ours) = match options.pty {
            Some((width, height)) => {
                let (master, slave) = open_pty(init, width, height, &options.terminal_modes)
                    .map_err(|e| unavailable(format!("a pty: {e}")))?;
                let fds = [slave.try_clone(), slave.try_clone(), Ok(slave)];
                let [a, b, c] = fds.map(|fd| fd.map_err(|e| unavailable(format!("a pty: {e}"))));
                ([a?, b?, c?], Ours::Pty(master))
            }
            None => {
                let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(unavailable);
                let (stdin_read, stdin_write) = pipe()?;
                let (stdout_read, stdout_write) = pipe()?;
                let (stderr_read, stderr_write) = pipe()?;
                ([stdin_read, stdout_write, stderr_write], Ours::Pipes { stdin_write, stdout_read, stderr_read })
            }
        };
        let (status_read, status_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(unavailable)?;

        let mut forkexec = tokio::process::Command::new(&self.program);
        forkexec
            .arg("forkexec")
            .arg(instance)
            .arg(&self.lxc_path)
            .arg(&config)
            .arg(options.cwd.as_deref().unwrap_or(""))
            .arg(uid.to_string())
            .arg(gid.to_string());
        if self.signature == Signature::WithCoreScheduling {
            // LXD passes 1 only where liblxc cannot share the container's core-scheduling
            // cookie itself; liblxc 5.0 can ("core_scheduling"), so LXD passes 0 as here.
            forkexec.arg("0");
        }
        forkexec.args(["--", "env"]).args(&environment).args(["--", "cmd"]).args(&sent);
        forkexec
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let [stdin_fd, stdout_fd, stderr_fd] = child_fds;
        forkexec
            .fd_mappings(vec![
                FdMapping { parent_fd: stdin_fd, child_fd: 3 },
                FdMapping { parent_fd: stdout_fd, child_fd: 4 },
                FdMapping { parent_fd: stderr_fd, child_fd: 5 },
                FdMapping { parent_fd: status_write, child_fd: 6 },
            ])
            .map_err(|e| unavailable(format!("passing descriptors: {e:?}")))?;
        let spawned = forkexec.spawn();
        // The command owns the child's ends until it is dropped: then only the child holds
        // them, so end-of-file comes when the command closes them.
        drop(forkexec);
        let mut child = spawned.map_err(|e| unavailable(format!("running {}: {e}", self.program.display())))?;
        let mut diagnostics = child.stderr.take();

        let mut status = pipe::Receiver::from_owned_fd(status_read).map_err(unavailable)?;
        let mut pid = [0u8; 4];
        let reported = tokio::time::timeout(ATTACH_TIMEOUT, status.read_exact(&mut pid)).await;
        if !matches!(reported, Ok(Ok(_))) {
            let _ = child.start_kill();
            let mut said = String::new();
            if let Some(stderr) = diagnostics.as_mut() {
                let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut said)).await;
            }
            let _ = child.wait().await;
            let said = said.trim();
            return Err(unavailable(format!("{} forkexec did not attach: {said}", self.program.display())));
        }
        let attached = rustix::process::Pid::from_raw(i32::from_ne_bytes(pid));
        // Signals go through a pidfd: `forkexec` reaps the attached process only when it ends,
        // so while it runs the pid is that process's. Once it has ended there is nothing to
        // signal (and the pid may be another's).
        let mut pidfd =
            attached.and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
        if !matches!(child.try_wait(), Ok(None)) {
            pidfd = None;
        }
        if let Some(stderr) = diagnostics {
            let instance = instance.to_owned();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(instance, "forkexec: {line}");
                }
            });
        }

        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let code = match child.wait().await {
                Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                Err(_) => 255,
            };
            let _ = exit_tx.send(Some(code));
        });

        let spoke = Arc::new(AtomicBool::new(false));
        let (stdout_tx, stdout) = mpsc::channel(16);
        let (stderr_tx, stderr) = mpsc::channel(16);
        let (input, pty, readers) = match ours {
            Ours::Pty(master) => {
                let master = Arc::new(master);
                drop(stderr_tx);
                let reader = tokio::spawn(read_pty(Arc::clone(&master), stdout_tx, Arc::clone(&spoke), exited.clone()));
                (Input::Pty(Arc::clone(&master)), Some(master), vec![reader])
            }
            Ours::Pipes { stdin_write, stdout_read, stderr_read } => {
                let input = pipe::Sender::from_owned_fd(stdin_write).map_err(unavailable)?;
                let readers = vec![
                    tokio::spawn(read_pipe(stdout_read, stdout_tx, None)),
                    tokio::spawn(read_pipe(stderr_read, stderr_tx, Some(Arc::clone(&spoke)))),
                ];
                (Input::Pipe(input), None, readers)
            }
        };
        let control = Control { pidfd, pty };
        let ending = Ending { readers, exited, program: program.clone(), spoke };
        Ok(crate::exec::Exec::local(input, stdout, stderr, control, ending))
    }

    /// A TCP connection to `127.0.0.1:port` from inside `instance`: a socket made in its
    /// network namespace, so the service sees a connection from its own loopback, as from a
    /// process inside. The outer error: this way cannot be used; the inner: the connection
    /// failed (nothing listens there, say).
    pub async fn connect(
        &self,
        instance: &str,
        port: u16,
    ) -> std::result::Result<io::Result<tokio::net::TcpStream>, Unavailable> {
        let init = self.init(instance).await?;
        let namespace = std::fs::File::open(format!("/proc/{}/ns/net", init.pid)).map_err(unavailable)?;
        if !init.alive() {
            return Err(unavailable(format!("{instance} restarted")));
        }
        // A thread of its own enters the namespace, makes the socket (which stays in that
        // namespace for good) and ends: no thread of the runtime ever changes namespace.
        let socket = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || -> io::Result<OwnedFd> {
                rustix::thread::move_into_link_name_space(
                    namespace.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                Ok(rustix::net::socket_with(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
                    None,
                )?)
            })
            .join()
        })
        .await
        .map_err(unavailable)?
        .map_err(|_| unavailable("the namespace thread panicked"))?
        .map_err(|e| unavailable(format!("a socket in {instance}'s network namespace: {e}")))?;
        let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
        Ok(socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await)
    }
}

/// Our ends of a command's standard streams.
enum Ours {
    Pty(AsyncFd<OwnedFd>),
    Pipes { stdin_write: OwnedFd, stdout_read: OwnedFd, stderr_read: OwnedFd },
}

/// A pty pair in the container's own devpts (as LXD makes one): the master stays here, the
/// slave is the command's terminal, owned by the container's root as LXD leaves it.
fn open_pty(init: Init, width: u32, height: u32, modes: &[(u8, u32)]) -> io::Result<(AsyncFd<OwnedFd>, OwnedFd)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        format!("/proc/{}/root", init.pid),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Inside the container's root, whatever its links say: never a host path.
    let master = rustix::fs::openat2(
        &root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let filesystem = rustix::fs::fstatfs(&master)?;
    #[allow(clippy::unnecessary_cast)]
    if filesystem.f_type as i64 != DEVPTS_MAGIC {
        return Err(io::Error::other("the container's /dev/pts/ptmx is not a devpts"));
    }
    if !init.alive() {
        return Err(io::Error::other("the container restarted"));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", init.pid))?;
    let (root_uid, root_gid) = real_ids(&status).ok_or_else(|| io::Error::other("the container's root ids"))?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY | rustix::pty::OpenptFlags::CLOEXEC,
    )?;
    let mut termios = rustix::termios::tcgetattr(&slave)?;
    termios.input_modes |= rustix::termios::InputModes::IUTF8;
    apply_terminal_modes(&mut termios, modes);
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios)?;
    resize(&master, width, height)?;
    rustix::fs::fchown(&slave, Some(rustix::fs::Uid::from_raw(root_uid)), Some(rustix::fs::Gid::from_raw(root_gid)))?;
    // `AsyncFd::new` is deprecated for types that do not own their descriptor (the
    // replacement, `register`, is unsafe, which this workspace forbids); an `OwnedFd` owns it.
    #[allow(deprecated)]
    let master = AsyncFd::new(master)?;
    Ok((master, slave))
}

/// Applies an SSH client's terminal modes (RFC 4254 section 8, and RFC 8160's `IUTF8`) as
/// OpenSSH's sshd does (`tty_parse_modes`): control characters (255 turns one off), input,
/// local, output and control flags; speeds and modes Linux has not are left alone.
fn apply_terminal_modes(termios: &mut rustix::termios::Termios, modes: &[(u8, u32)]) {
    use rustix::termios::{
        ControlModes as C, InputModes as I, LocalModes as L, OutputModes as O, SpecialCodeIndex as S,
    };
    for &(opcode, value) in modes {
        let on = value != 0;
        let character = match opcode {
            1 => Some(S::VINTR),
            2 => Some(S::VQUIT),
            3 => Some(S::VERASE),
            4 => Some(S::VKILL),
            5 => Some(S::VEOF),
            6 => Some(S::VEOL),
            7 => Some(S::VEOL2),
            8 => Some(S::VSTART),
            9 => Some(S::VSTOP),
            10 => Some(S::VSUSP),
            12 => Some(S::VREPRINT),
            13 => Some(S::VWERASE),
            14 => Some(S::VLNEXT),
            18 => Some(S::VDISCARD),
            _ => None,
        };
        if let Some(index) = character {
            // 255 is the protocol's "disabled"; Linux's is 0.
            termios.special_codes[index] = if value >= 255 { 0 } else { value as u8 };
            continue;
        }
        match opcode {
            30 => termios.input_modes.set(I::IGNPAR, on),
            31 => termios.input_modes.set(I::PARMRK, on),
            32 => termios.input_modes.set(I::INPCK, on),
            33 => termios.input_modes.set(I::ISTRIP, on),
            34 => termios.input_modes.set(I::INLCR, on),
            35 => termios.input_modes.set(I::IGNCR, on),
            36 => termios.input_modes.set(I::ICRNL, on),
            37 => termios.input_modes.set(I::IUCLC, on),
            38 => termios.input_modes.set(I::IXON, on),
            39 => termios.input_modes.set(I::IXANY, on),
            40 => termios.input_modes.set(I::IXOFF, on),
            41 => termios.input_modes.set(I::IMAXBEL, on),
            42 => termios.input_modes.set(I::IUTF8, on),
            50 => termios.local_modes.set(L::ISIG, on),
            51 => termios.local_modes.set(L::ICANON, on),
            52 => termios.local_modes.set(L::XCASE, on),
            53 => termios.local_modes.set(L::ECHO, on),
            54 => termios.local_modes.set(L::ECHOE, on),
            55 => termios.local_modes.set(L::ECHOK, on),
            56 => termios.local_modes.set(L::ECHONL, on),
            57 => termios.local_modes.set(L::NOFLSH, on),
            58 => termios.local_modes.set(L::TOSTOP, on),
            59 => termios.local_modes.set(L::IEXTEN, on),
            60 => termios.local_modes.set(L::ECHOCTL, on),
            61 => termios.local_modes.set(L::ECHOKE, on),
            62 => termios.local_modes.set(L::PENDIN, on),
            70 => termios.output_modes.set(O::OPOST, on),
            71 => termios.output_modes.set(O::OLCUC, on),
            72 => termios.output_modes.set(O::ONLCR, on),
            73 => termios.output_modes.set(O::OCRNL, on),
            74 => termios.output_modes.set(O::ONOCR, on),
            75 => termios.output_modes.set(O::ONLRET, on),
            90 | 91 if on => {
                termios.control_modes.remove(C::CSIZE);
                termios.control_modes.insert(if opcode == 90 { C::CS7 } else { C::CS8 });
            }
            92 => termios.control_modes.set(C::PARENB, on),
            93 => termios.control_modes.set(C::PARODD, on),
            _ => {}
        }
    }
}

fn resize(master: impl AsFd, width: u32, height: u32) -> io::Result<()> {
    let size = |n: u32| u16::try_from(n.max(1)).unwrap_or(u16::MAX);
    let winsize = rustix::termios::Winsize { ws_row: size(height), ws_col: size(width), ws_xpixel: 0, ws_ypixel: 0 };
    Ok(rustix::termios::tcsetwinsize(master, winsize)?)
}

/// Reads a pipe to its end into `tx` (reading on, and dropping, once nobody receives).
async fn read_pipe(fd: OwnedFd, tx: mpsc::Sender<Bytes>, spoke: Option<Arc<AtomicBool>>) {
    let Ok(mut pipe) = pipe::Receiver::from_owned_fd(fd) else { return };
    let mut receiving = true;
    loop {
        let mut buffer = BytesMut::with_capacity(CHUNK);
        match pipe.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(spoke) = &spoke {
                    spoke.store(true, Ordering::Relaxed);
                }
                if receiving && tx.send(buffer.freeze()).await.is_err() {
                    receiving = false;
                }
            }
        }
    }
}

/// Reads the pty's master into `tx` until the terminal is gone, or the command has ended and
/// what it wrote is read (a background job still holding the terminal does not keep the
/// session, as with sshd).
async fn read_pty(
    master: Arc<AsyncFd<OwnedFd>>,
    tx: mpsc::Sender<Bytes>,
    spoke: Arc<AtomicBool>,
    mut exited: watch::Receiver<Option<i32>>,
) {
    let mut receiving = true;
    let mut ended = false;
    loop {
        let chunk = if ended {
            match read_now(&master) {
                Ok(Some(chunk)) => chunk,
                _ => break,
            }
        } else {
            tokio::select! {
                ready = master.readable() => {
                    let Ok(mut guard) = ready else { break };
                    match guard.try_io(read_now) {
                        Ok(Ok(Some(chunk))) => chunk,
                        Ok(Ok(None)) | Ok(Err(_)) => break,
                        Err(_would_block) => continue,
                    }
                }
                _ = exited.wait_for(Option::is_some) => {
                    ended = true;
                    continue;
                }
            }
        };
        spoke.store(true, Ordering::Relaxed);
        if receiving && tx.send(chunk).await.is_err() {
            receiving = false;
        }
    }
}

/// One read from the master: `None` at its end (EIO once no one holds the terminal), a
/// `WouldBlock` error when nothing is there yet.
fn read_now(master: &AsyncFd<OwnedFd>) -> io::Result<Option<Bytes>> {
    let mut buffer = BytesMut::zeroed(CHUNK);
    match rustix::io::read(master.get_ref(), &mut buffer[..]) {
        Ok(0) | Err(rustix::io::Errno::IO) => Ok(None),
        Ok(n) => {
            buffer.truncate(n);
            Ok(Some(buffer.freeze()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The command's input: its stdin pipe, or its terminal.
pub(crate) enum Input {
    Pipe(pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

impl Input {
    pub(crate) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Input::Pipe(pipe) => pipe.write_all(data).await,
            Input::Pty(master) => {
                let mut data = data;
                while !data.is_empty() {
                    let mut guard = master.writable().await?;
                    match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from)) {
                        Ok(Ok(n)) => data = &data[n..],
                        Ok(Err(e)) => return Err(e),
                        Err(_would_block) => continue,
                    }
                }
                Ok(())
            }
        }
    }

    /// Ends the input: end-of-file on a pipe; on a terminal, its end-of-file character.
    pub(crate) async fn close(mut self) -> io::Result<()> {
        if matches!(self, Input::Pty(_)) {
            self.write(b"\x04").await?;
        }
        Ok(())
    }
}

/// Window size and signals of an attached command.
#[derive(Debug)]
pub(crate) struct Control {
    pidfd: Option<OwnedFd>,
    pty: Option<Arc<AsyncFd<OwnedFd>>>,
}

impl Control {
    pub(crate) fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        match &self.pty {
            Some(master) => resize(master.get_ref(), width, height),
            None => Ok(()),
        }
    }

    /// Sends signal `number` to the attached process, as LXD does (not to its group).
    pub(crate) fn signal(&self, number: i32) -> io::Result<()> {
        let signal = rustix::process::Signal::from_named_raw(number)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("signal {number}")))?;
        match &self.pidfd {
            Some(pidfd) => match rustix::process::pidfd_send_signal(pidfd, signal) {
                // It has ended already: nothing to signal.
                Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
                Err(e) => Err(e.into()),
            },
            None => Ok(()),
        }
    }
}

/// What [`crate::Exec::wait`] waits for on this path.
#[derive(Debug)]
pub(crate) struct Ending {
    readers: Vec<JoinHandle<()>>,
    exited: watch::Receiver<Option<i32>>,
    program: String,
    spoke: Arc<AtomicBool>,
}

impl Ending {
    pub(crate) async fn wait(mut self) -> Result<ExecExit> {
        for reader in self.readers {
            let _ = reader.await;
        }
        let code = match self.exited.wait_for(Option::is_some).await {
            Ok(code) => code.unwrap_or(255),
            Err(_) => 255,
        };
        // liblxc's own `execvp` failure exits 127 / 126 without a word where no shell ran.
        let note = match code {
            127 => Some("Command not found"),
            126 => Some("Command not executable"),
            _ => None,
        }
        .and_then(spawn_failure)
        .filter(|_| !self.spoke.load(Ordering::Relaxed))
        .map(|(_, what)| format!("{}: {what}", self.program));
        Ok(ExecExit { code, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forkexec_arguments_are_known_for_lxd_5_and_6_only() {
        let table = [
            ("lxd", "5.0.2", Some(Signature::WithCoreScheduling)),
            ("lxd", "5.21.3", Some(Signature::WithCoreScheduling)),
            ("lxd", "6.6", Some(Signature::WithCoreScheduling)),
            ("lxd", "6.7", Some(Signature::WithoutCoreScheduling)),
            ("lxd", "4.0.9", None),
            ("lxd", "7.0", None),
            ("lxd", "", None),
            ("incus", "6.0.1", None),
        ];
        for (server, version, expected) in table {
            assert_eq!(signature(server, version), expected, "{server} {version}");
        }
    }

    #[test]
    fn folders_follow_lxd_dir_as_lxd_does() {
        assert_eq!(folders(None), (PathBuf::from("/var/lib/lxd/containers"), PathBuf::from("/var/log/lxd")));
        assert_eq!(folders(Some("")), folders(None));
        assert_eq!(folders(Some("/tmp/x")), (PathBuf::from("/tmp/x/containers"), PathBuf::from("/tmp/x/logs")));
    }

    #[test]
    fn only_unprivileged_maps_without_host_root_are_attached_here() {
        let unprivileged = "lxc.idmap = u 0 1000000 1000000000\nlxc.idmap = g 0 1000000 1000000000\n";
        assert_eq!(attachable(unprivileged), Ok(()));
        let share = format!("{unprivileged}lxc.idmap = g 3000 65000 1\n");
        assert_eq!(attachable(&share), Ok(()));
        assert!(attachable("lxc.uts.name = x\n").is_err(), "privileged");
        assert!(attachable(&format!("{unprivileged}lxc.idmap = u 5 0 1\n")).is_err(), "host root mapped");
        assert!(attachable("lxc.idmap = u 0 1000000\n").is_err(), "unreadable");
    }

    #[test]
    fn environment_gets_lxds_defaults_where_the_request_has_none() {
        let mut requested = BTreeMap::new();
        requested.insert("HOME".to_string(), "/home/alice".to_string());
        let as_root = environment(&requested, 0, &["/snap/bin"]);
        assert_eq!(
            as_root,
            [
                "HOME=/home/alice",
                "LANG=C.UTF-8",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin",
                "USER=root",
            ]
        );
        requested.insert("LANG".into(), "de_DE.UTF-8".into());
        requested.insert("PATH".into(), "/bin".into());
        let as_user = environment(&requested, 1000, &["/snap/bin"]);
        assert_eq!(as_user, ["HOME=/home/alice", "LANG=de_DE.UTF-8", "PATH=/bin"]);
    }

    #[test]
    fn start_time_and_ids_are_read_from_proc() {
        let stat = "4242 (we ird) name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time(stat), Some(987654));
        assert_eq!(start_time("garbage"), None);
        let status =
            "Name:\tinit\nUid:\t1000000\t1000000\t1000000\t1000000\nGid:\t1000000\t1000000\t1000000\t1000000\n";
        assert_eq!(real_ids(status), Some((1_000_000, 1_000_000)));
        assert_eq!(real_ids("Name:\tx\n"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        assert!(start_time(&own).is_some());
    }

    #[test]
    fn terminal_modes_are_applied_as_sshd_applies_them() {
        use rustix::termios::{
            ControlModes as C, InputModes as I, LocalModes as L, OutputModes as O, SpecialCodeIndex as S,
        };
        let master = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .expect("a pty to read a termios from");
        let mut termios = rustix::termios::tcgetattr(&master).expect("its termios");
        termios.local_modes.insert(L::ECHO | L::ICANON);
        termios.control_modes.insert(C::CS8);
        let modes = [
            (3, 8),       // VERASE = ^H
            (2, 255),     // VQUIT disabled
            (53, 0),      // -echo
            (51, 0),      // -icanon
            (42, 1),      // iutf8
            (36, 0),      // -icrnl
            (72, 1),      // onlcr
            (90, 1),      // cs7
            (128, 38400), // a speed: left alone
            (200, 1),     // unknown: left alone
        ];
        apply_terminal_modes(&mut termios, &modes);
        assert_eq!(termios.special_codes[S::VERASE], 8);
        assert_eq!(termios.special_codes[S::VQUIT], 0);
        assert!(!termios.local_modes.intersects(L::ECHO | L::ICANON));
        assert!(termios.input_modes.contains(I::IUTF8) && !termios.input_modes.contains(I::ICRNL));
        assert!(termios.output_modes.contains(O::ONLCR));
        assert_eq!(termios.control_modes & C::CSIZE, C::CS7);
    }

    #[test]
    fn only_plain_instance_names_become_paths() {
        for good in ["alice-dev-1a2b3c4d", "x", "a1"] {
            assert!(plain_name(good), "{good}");
        }
        for bad in ["", "../x", "a/b", "-a", "a.b", &"x".repeat(64)] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
