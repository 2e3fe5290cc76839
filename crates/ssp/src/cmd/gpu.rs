//! `ssp gpu list|usage|attach|detach|set|allow`, and the `--gpus/--gpu/--for` flags that
//! `ssp container create` shares.

use anyhow::Context;
use clap::{Args, Subcommand};
use ssp_api::{GpuAllowlist, GpuAsk, GpuUpdate};
use ssp_core::names::Name;

use crate::cmd::ContainerRef;
use crate::output::{self, InputError};

/// Which GPUs to grant: a count or exact host indices, for how long.
#[derive(Debug, Clone, Args)]
pub struct GpuArgs {
    /// This many GPUs, any that are free.
    #[arg(long, value_name = "N", conflicts_with = "gpu")]
    gpus: Option<u32>,
    /// Exactly these host GPUs, e.g. 2,3 (inside they are GPU0, GPU1).
    #[arg(long, value_name = "INDICES", value_parser = indices)]
    gpu: Option<Indices>,
    /// How long the grant lasts, e.g. 8h, 30m, 2d (then the GPUs are detached).
    #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
    duration: Option<String>,
}

/// Host GPU indices as typed (`2,3`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indices(Vec<u32>);

fn indices(text: &str) -> Result<Indices, String> {
    Ok(Indices(ssp_core::gpu::parse_indices(text)?.into_iter().collect()))
}

fn duration(text: &str) -> Result<String, String> {
    ssp_core::duration::parse(text)?;
    Ok(text.to_string())
}

impl GpuArgs {
    /// The ask, if any GPU was asked for; `required` makes asking mandatory.
    pub fn ask(self, required: bool) -> anyhow::Result<Option<GpuAsk>> {
        match (self.gpus, self.gpu, self.duration) {
            (None, None, None) if !required => Ok(None),
            (None, None, _) => {
                Err(InputError("say which GPUs: --gpus N (any free) or --gpu 2,3 (exactly those)".into()).into())
            }
            (count, indices, duration) => Ok(Some(GpuAsk { count, indices: indices.map(|i| i.0), duration })),
        }
    }
}

/// `ssp gpu …`.
#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// The host's GPUs: who holds each, how busy it is, and what runs on it.
    List,
    /// GPU use per container and per user, with GPU-hours.
    Usage {
        /// Also each GPU's last hour: mean and peak utilization, peak memory, and a bar a
        /// minute.
        #[arg(long)]
        history: bool,
    },
    /// Give a container more GPUs, while it runs.
    Attach {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        gpus: GpuArgs,
        /// Return once the grant is recorded, without waiting for the GPUs to be inside.
        #[arg(long)]
        no_wait: bool,
    },
    /// Take a GPU from a container; the container keeps running.
    Detach {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        /// The host GPU to detach.
        #[arg(long, value_name = "INDEX")]
        gpu: u32,
        /// Return once the detach is recorded, without waiting for the GPU to be gone.
        #[arg(long)]
        no_wait: bool,
    },
    /// Mark a GPU shared or exclusive, reserve it for a user or lift that (admin).
    Set {
        /// Host GPU index.
        index: u32,
        /// Several containers may hold it.
        #[arg(long, conflicts_with = "exclusive")]
        shared: bool,
        /// One container at a time (the default).
        #[arg(long)]
        exclusive: bool,
        /// Only this user may be given it.
        #[arg(long, value_name = "USER", conflicts_with = "unreserve")]
        reserve: Option<Name>,
        /// Anyone may be given it again.
        #[arg(long)]
        unreserve: bool,
    },
    /// Limit which GPUs or models a user may be given (admin).
    Allow {
        /// The user.
        user: Name,
        /// Only these host GPUs, e.g. 0,1 (`--gpu` names indices everywhere; `--gpus` is a count).
        #[arg(long, value_name = "INDICES", value_parser = indices)]
        gpu: Option<Indices>,
        /// Only these models, comma-separated (as `ssp gpu list` shows them).
        #[arg(long, value_name = "MODELS", value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Any GPU and model (lifts the lists).
        #[arg(long, conflicts_with_all = ["gpu", "models"])]
        any: bool,
    },
}

/// Host indices as a person reads them.
pub fn held(gpus: &[u32]) -> String {
    if gpus.is_empty() {
        return "-".into();
    }
    gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Runs `ssp gpu …`.
pub async fn run(command: GpuCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        GpuCommand::List => {
            let list = client.gpus().await.context("listing GPUs")?;
            if json {
                return output::json(&list);
            }
            if list.gpus.is_empty() {
                println!("this host has no GPUs (source: {})", list.source);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .gpus
                .iter()
                .map(|g| {
                    let holders: Vec<String> = g
                        .holders
                        .iter()
                        .map(|h| {
                            let who = h.container.clone().unwrap_or_else(|| h.owner.clone());
                            match h.expires_at {
                                Some(at) => format!("{who} (until {})", output::timestamp(Some(at))),
                                None => who,
                            }
                        })
                        .collect();
                    let mut mark = if g.shared { "shared".to_string() } else { String::new() };
                    if let Some(user) = &g.reserved_for {
                        mark = format!("{mark} reserved:{user}").trim().to_string();
                    }
                    vec![
                        g.index.to_string(),
                        g.model.clone(),
                        if holders.is_empty() { "free".into() } else { holders.join(", ") },
                        format!("{}%", g.utilization),
                        format!("{} / {}", mib(g.memory_used), g.memory),
                        g.processes
                            .iter()
                            .map(|p| format!("{}@{}", p.pid, p.container.as_deref().unwrap_or("host")))
                            .collect::<Vec<_>>()
                            .join(" "),
                        if mark.is_empty() { "-".into() } else { mark },
                    ]
                })
                .collect();
            output::table(&["GPU", "MODEL", "HELD BY", "UTIL", "MEMORY", "PROCESSES", "MARKS"], &rows);
            Ok(())
        }
        GpuCommand::Usage { history: true } => {
            let history = client.gpu_history().await.context("reading the GPUs' last hour")?;
            if json {
                return output::json(&history);
            }
            let rows: Vec<Vec<String>> = history
                .gpus
                .iter()
                .map(|gpu| {
                    let buckets = &gpu.buckets;
                    let samples = u32::try_from(buckets.len().max(1)).unwrap_or(u32::MAX);
                    let mean = buckets.iter().map(|b| b.utilization_avg).sum::<u32>() / samples;
                    let peak = buckets.iter().map(|b| b.utilization_max).max().unwrap_or(0);
                    let memory = buckets.iter().map(|b| b.memory_used_max).max().unwrap_or(0);
                    vec![
                        gpu.index.to_string(),
                        format!("{mean}%"),
                        format!("{peak}%"),
                        mib(memory),
                        hour_bars(buckets, history.until, history.bucket_secs),
                    ]
                })
                .collect();
            output::table(&["GPU", "MEAN", "PEAK", "MEMORY PEAK", "LAST HOUR (a bar a minute, newest right)"], &rows);
            Ok(())
        }
        GpuCommand::Usage { history: false } => {
            let usage = client.gpu_usage().await.context("reading GPU usage")?;
            if json {
                return output::json(&usage);
            }
            let rows: Vec<Vec<String>> = usage
                .containers
                .iter()
                .map(|c| vec![c.container.clone(), held(&c.gpus), mib(c.memory_used), c.processes.len().to_string()])
                .collect();
            output::table(&["CONTAINER", "GPUS", "GPU MEMORY", "PROCESSES"], &rows);
            println!();
            let rows: Vec<Vec<String>> = usage
                .users
                .iter()
                .map(|u| {
                    vec![
                        u.user.clone(),
                        u.holding.to_string(),
                        format!("{:.2}", u.gpu_hours),
                        mib(u.memory_used),
                        u.processes.to_string(),
                    ]
                })
                .collect();
            output::table(&["USER", "HOLDING", "GPU-HOURS", "GPU MEMORY", "PROCESSES"], &rows);
            Ok(())
        }
        GpuCommand::Attach { container, gpus, no_wait } => {
            let (owner, name) = container.resolve(&client).await?;
            let ask = gpus.ask(true)?.unwrap_or_default();
            let grant = client
                .attach_gpus(&owner, &name, &ask, !no_wait)
                .await
                .with_context(|| format!("attaching GPUs to {owner}/{name}"))?;
            if json {
                return output::json(&grant);
            }
            let until =
                grant.expires_at.map(|at| format!(" until {}", output::timestamp(Some(at)))).unwrap_or_default();
            let plugged = if no_wait { "is being given" } else { "was given" };
            println!(
                "{owner}/{name} {plugged} GPU {}{until}; it holds {} (seen inside as GPU0…)",
                held(&grant.granted),
                held(&grant.holds)
            );
            Ok(())
        }
        GpuCommand::Detach { container, gpu, no_wait } => {
            let (owner, name) = container.resolve(&client).await?;
            client
                .detach_gpu(&owner, &name, gpu, !no_wait)
                .await
                .with_context(|| format!("detaching GPU {gpu} from {owner}/{name}"))?;
            if json {
                return output::json(&serde_json::json!({ "detached": gpu }));
            }
            if no_wait {
                println!("GPU {gpu} is being detached from {owner}/{name}");
            } else {
                println!("GPU {gpu} was detached from {owner}/{name} (the container keeps running)");
            }
            Ok(())
        }
        GpuCommand::Set { index, shared, exclusive, reserve, unreserve } => {
            let update = GpuUpdate {
                shared: if shared {
                    Some(true)
                } else if exclusive {
                    Some(false)
                } else {
                    None
                },
                reserved_for: match (reserve, unreserve) {
                    (Some(user), _) => Some(user.to_string()),
                    (None, true) => Some(String::new()),
                    (None, false) => None,
                },
            };
            if update == GpuUpdate::default() {
                return Err(InputError(
                    "say what to change: --shared, --exclusive, --reserve USER or --unreserve".into(),
                )
                .into());
            }
            client.update_gpu(index, &update).await.with_context(|| format!("changing GPU {index}"))?;
            if !json {
                println!("GPU {index} changed");
            }
            Ok(())
        }
        GpuCommand::Allow { user, gpu, models, any } => {
            if !any && gpu.is_none() && models.is_none() {
                return Err(InputError("say what to allow: --gpu 0,1, --models NAME or --any".into()).into());
            }
            let list = GpuAllowlist { indices: gpu.map(|i| i.0), models };
            client.set_gpu_allowlist(user.as_str(), &list).await.with_context(|| format!("setting {user}'s GPUs"))?;
            if !json {
                println!("{user}'s GPU allowlist is set");
            }
            Ok(())
        }
    }
}

/// One character per bucket of the hour before `until`, oldest left: `▁`…`█` for mean
/// utilization, a space where nothing was sampled.
fn hour_bars(buckets: &[ssp_api::GpuHistoryBucket], until: i64, bucket_secs: i64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let bucket_secs = bucket_secs.max(1);
    let slots = usize::try_from(3600 / bucket_secs).unwrap_or(60).max(1);
    let first = until - i64::try_from(slots).unwrap_or(60) * bucket_secs;
    let mut line = vec![' '; slots];
    for bucket in buckets {
        let Ok(slot) = usize::try_from((bucket.start - first).div_euclid(bucket_secs)) else { continue };
        if let Some(cell) = line.get_mut(slot) {
            let level = usize::try_from(bucket.utilization_avg.min(100) * 7 / 100).unwrap_or(7);
            *cell = BARS[level];
        }
    }
    line.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::hour_bars;

    #[test]
    fn an_hour_is_a_bar_a_minute_with_gaps_left_blank() {
        let bucket = |start, utilization_avg| ssp_api::GpuHistoryBucket {
            start,
            utilization_avg,
            utilization_max: utilization_avg,
            memory_used_max: 0,
        };
        // The hour before 7200 in minutes: 3600 is the first slot, 7140 the last.
        let line = hour_bars(&[bucket(3600, 0), bucket(3660, 50), bucket(7140, 100), bucket(60, 100)], 7200, 60);
        let chars: Vec<char> = line.chars().collect();
        assert_eq!(chars.len(), 60);
        assert_eq!((chars[0], chars[1], chars[2], chars[59]), ('▁', '▄', ' ', '█'));
        assert_eq!(chars.iter().filter(|c| **c != ' ').count(), 3, "a bucket before the hour is not drawn");
    }
}
