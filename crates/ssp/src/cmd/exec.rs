//! `ssp exec CONTAINER -- COMMAND ARGS…`: runs a command in a container to its end, through
//! the daemon, and exits with the command's exit code — so `ssp exec box -- make test` can
//! stand in a script where `make test` stood.
//!
//! Not interactive: standard input (when it is not a terminal) is read whole and sent first,
//! and the output comes back when the command ends. Interactive sessions go through SSH.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::Args;
use ssp_api::{ExecRequest, ExecResult};

use crate::cmd::ContainerRef;
use crate::output::{self, InputError};

/// Arguments of `ssp exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// `NAME` or `OWNER/NAME`.
    pub container: ContainerRef,
    /// Run as root in the container instead of the owner's account.
    #[arg(long)]
    pub root: bool,
    /// An environment variable for the command, `NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = env_pair)]
    pub env: Vec<(String, String)>,
    /// Send no standard input, even when it is not a terminal (like `ssh -n`).
    #[arg(long, short = 'n')]
    pub no_stdin: bool,
    /// The program and its arguments, after `--` (no shell unless you run one).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Splits `NAME=VALUE`; the daemon checks the name against its own rule.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// `ssp exec`: the command's exit code, or an error if it could not be run.
pub async fn run(args: ExecArgs, json: bool) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let environment: BTreeMap<String, String> = args.env.into_iter().collect();
    // A terminal on stdin means a person typing, who would wait forever for us to finish
    // reading; only piped or redirected input is sent.
    let stdin = if args.no_stdin || std::io::stdin().is_terminal() {
        None
    } else {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).context("cannot read standard input to send to the command")?;
        (!input.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&input))
    };
    let client = super::connect()?;
    let (owner, name) = args.container.resolve(&client).await?;
    let request = ExecRequest { command: args.command, stdin_base64: stdin, environment, root: args.root };
    let program = request.command.first().cloned().unwrap_or_default();
    let result =
        client.exec(&owner, &name, &request).await.with_context(|| format!("running {program:?} in {owner}/{name}"))?;
    if json {
        output::json(&result)?;
    } else {
        write_output(&result)?;
    }
    Ok(ExitCode::from(exit_status(result.exit_code)))
}

/// Writes the command's output to ours, byte for byte.
fn write_output(result: &ExecResult) -> anyhow::Result<()> {
    let decode = |what: &str, text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .with_context(|| format!("the daemon sent the command's {what} in a form ssp cannot decode"))
    };
    let stdout = decode("output", &result.stdout_base64)?;
    let stderr = decode("error output", &result.stderr_base64)?;
    // A closed pipe (`ssp exec … | head`) is not our failure: the reader had enough.
    let quiet = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    };
    let mut out = std::io::stdout().lock();
    quiet(out.write_all(&stdout).and_then(|()| out.flush())).context("cannot write the command's output")?;
    let mut err = std::io::stderr().lock();
    quiet(err.write_all(&stderr).and_then(|()| err.flush())).context("cannot write the command's error output")?;
    Ok(())
}

/// The command's exit code as ours; codes outside 0-255 (which no Unix process exits with)
/// become 255 rather than wrapping around to a false success.
fn exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

/// Refuses an exec without a command before anything is sent (clap already requires one;
/// this guards a command made only of empty strings).
fn check(args: &ExecArgs) -> Result<(), InputError> {
    if args.command.first().is_none_or(String::is_empty) {
        return Err(InputError("give the command to run after `--`, e.g. ssp exec box -- uname -a".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_pairs_split_at_the_first_equals() {
        assert_eq!(env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(env_pair("EMPTY="), Ok(("EMPTY".into(), String::new())));
        assert!(env_pair("=x").is_err());
        assert!(env_pair("NOVALUE").is_err());
    }

    #[test]
    fn exit_codes_pass_through_and_never_wrap_to_success() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(1), 1);
        assert_eq!(exit_status(137), 137);
        assert_eq!(exit_status(256), 255);
        assert_eq!(exit_status(-1), 255);
    }
}
