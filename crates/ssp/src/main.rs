//! `ssp`: the one binary of the Super Server Platform.
//!
//! Thin by design: it parses arguments, calls the library crates or the daemon's API, and
//! turns their results into tables, JSON and exit codes (listed in `output.rs`). Each command
//! lives in its own file under `cmd/`; `client.rs` speaks to the daemon, `config.rs` remembers
//! which daemon and how to log in to it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod cmd;
mod config;
mod output;

/// Share GPU servers: isolated system containers for every user, on the real LXD.
#[derive(Debug, Parser)]
#[command(name = "ssp", version, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to an ssp daemon: pin its certificate and keep the token.
    Login(cmd::login::LoginArgs),
    /// Forget the token (the daemon's URL and certificate are kept).
    Logout,
    /// Show who you are to the daemon, and what it runs.
    Info,
    /// Manage users, their roles and quotas (admin).
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Manage SSH public keys.
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Create, list, start, stop and delete containers.
    #[command(subcommand)]
    Container(cmd::container::ContainerCommand),
    /// Run a command in a container and exit with its exit code.
    Exec(cmd::exec::ExecArgs),
    /// See GPUs and who holds them; attach and detach them; usage; admin marks.
    #[command(subcommand)]
    Gpu(cmd::gpu::GpuCommand),
    /// Build, import and list container images.
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Snapshots of containers, their schedules and retention.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCommand),
    /// Share host folders into containers (admin).
    #[command(subcommand)]
    Share(cmd::share::ShareCommand),
    /// Your persistent home volume.
    #[command(subcommand)]
    Home(cmd::home::HomeCommand),
    /// A desktop in a container, for the portal or a VNC viewer through the SSH gateway.
    #[command(subcommand)]
    Desktop(cmd::desktop::DesktopCommand),
    /// Administration: backups of ssp's own state.
    #[command(subcommand)]
    Admin(cmd::admin::AdminCommand),
    /// Print an OpenSSH config with a Host per container, through the SSH gateway (or, with
    /// --frp-server, an frp client config that publishes the gateway).
    SshConfig(cmd::sshconfig::SshConfigArgs),
    /// Run the ssp daemon (API and reconciler).
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return output::fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let json = cli.json;
    let result = runtime.block_on(async {
        let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Login(args) => done(cmd::login::login(args, json).await),
            Command::Logout => done(cmd::login::logout()),
            Command::Info => done(cmd::info::run(json).await),
            Command::User(command) => done(cmd::user::run(command, json).await),
            Command::Key(command) => done(cmd::key::run(command, json).await),
            Command::Token(command) => done(cmd::token::run(command, json).await),
            Command::Container(command) => done(cmd::container::run(command, json).await),
            Command::Exec(args) => cmd::exec::run(args, json).await,
            Command::Image(command) => done(cmd::image::run(command, json).await),
            Command::Gpu(command) => done(cmd::gpu::run(command, json).await),
            Command::Serve(args) => done(cmd::serve::run(args).await),
            Command::SshConfig(args) => done(cmd::sshconfig::run(args).await),
            Command::Snapshot(command) => done(cmd::snapshot::run(command, json).await),
            Command::Share(command) => done(cmd::share::run(command, json).await),
            Command::Home(command) => done(cmd::home::run(command, json).await),
            Command::Desktop(command) => done(cmd::desktop::run(command, json).await),
            Command::Admin(command) => done(cmd::admin::run(command, json).await),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => output::fail(&e),
    }
}
