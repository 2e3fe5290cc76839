//! `ssp image build|list|recipes|publish|delete`: images built offline from the recipes in
//! `images/` and imported into the host's LXD, and images users publish from containers.
//!
//! `build`, `recipes` and `list --local` are host-side commands: they talk to the LXD socket
//! directly. A plain `list` asks the ssp daemon, which shows the images containers can be
//! made from, to anyone logged in.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use ssp_core::names::ImageName;
use ssp_image::install::{ensure_installed, InstallStep};
use ssp_image::RECIPE_PROPERTY;
use ssp_image::{BuildOptions, Progress};

use crate::output;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a recipe (cached by recipe content) and import it into LXD.
    Build {
        /// Recipe name: see `ssp image recipes`.
        recipe: String,
        /// Alias to import it under (default: the recipe name).
        #[arg(long)]
        alias: Option<String>,
    },
    /// List the images containers can be made from (from the ssp daemon).
    List {
        /// Ask the host's LXD directly instead of the ssp daemon (host-side, as root).
        #[arg(long)]
        local: bool,
    },
    /// List the recipes this ssp can build.
    Recipes,
    /// Publish a container as an image of its owner (from a snapshot: it keeps running).
    Publish {
        /// `NAME` or `OWNER/NAME`.
        container: crate::cmd::ContainerRef,
        /// The image's name.
        #[arg(long = "as", value_name = "NAME")]
        name: ImageName,
        /// Let every user make containers from it (admins).
        #[arg(long)]
        public: bool,
    },
    /// Delete a published image (containers made from it keep their files).
    Delete {
        /// `NAME` (yours) or `OWNER/NAME`.
        image: String,
    },
}

pub async fn run(command: ImageCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ImageCommand::Build { recipe, alias } => build(&recipe, alias.as_deref(), json).await,
        ImageCommand::List { local: true } => list_local(json).await,
        ImageCommand::List { local: false } => list(json).await,
        ImageCommand::Recipes => recipes(json),
        ImageCommand::Publish { container, name, public } => publish(container, name, public, json).await,
        ImageCommand::Delete { image } => delete(&image).await,
    }
}

async fn build(recipe_name: &str, alias: Option<&str>, json: bool) -> anyhow::Result<()> {
    let recipe = ssp_image::recipe(recipe_name)?;
    let alias = match alias {
        Some(alias) => ImageName::parse(alias)?,
        None => ImageName::parse(recipe.alias())?,
    };
    let lxd = ssp_lxd::Client::from_env()?;
    lxd.server().await.context("checking the LXD daemon")?;
    let started = Instant::now();
    let mut progress = Reporter::new(recipe_name);
    let installed = ensure_installed(&lxd, &recipe, &BuildOptions::default_for_host(), alias.as_str(), &mut |step| {
        progress.show(step)
    })
    .await;
    progress.finish();
    let installed = installed?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        return output::json(&serde_json::json!({
            "recipe": recipe.name, "alias": installed.alias, "fingerprint": installed.fingerprint,
            "built": installed.built, "imported": installed.imported, "seconds": seconds,
        }));
    }
    let how = match (installed.built, installed.imported) {
        (true, _) => format!("built and imported in {seconds:.1} s"),
        (false, true) => format!("imported from the build cache in {seconds:.1} s"),
        (false, false) => "already in LXD, nothing to do".to_string(),
    };
    println!(
        "image {} ready ({how}): fingerprint {}",
        installed.alias,
        &installed.fingerprint[..12.min(installed.fingerprint.len())]
    );
    Ok(())
}

/// Shows build steps and upload progress: bars on a terminal, plain lines in logs.
struct Reporter {
    recipe: String,
    bar: Option<ProgressBar>,
    terminal: bool,
    started: Instant,
}

impl Reporter {
    fn new(recipe: &str) -> Self {
        Self { recipe: recipe.into(), bar: None, terminal: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    fn spinner(&mut self, message: String) {
        if !self.terminal {
            eprintln!("[{:>5.1}s] {}: {message}", self.started.elapsed().as_secs_f64(), self.recipe);
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
    }

    fn show(&mut self, step: InstallStep) {
        match step {
            InstallStep::Build(Progress::Step(step)) => self.spinner(format!("building {}: {step}", self.recipe)),
            InstallStep::Build(Progress::Done) => self.spinner(format!("built {}", self.recipe)),
            InstallStep::Upload { sent, total } => {
                if !self.terminal {
                    if sent == total {
                        self.spinner(format!("uploaded {} to LXD", output::human_bytes(total)));
                    }
                    return;
                }
                let bar = self.bar.get_or_insert_with(ProgressBar::no_length);
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message("uploading to LXD");
                }
                bar.set_position(sent);
            }
            InstallStep::Registering => self.spinner("LXD is unpacking the image".into()),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

async fn publish(container: crate::cmd::ContainerRef, name: ImageName, public: bool, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    let request = ssp_api::ImagePublish { container: container.to_string(), name: name.to_string(), public };
    let mut progress = output::Progress::new();
    progress.set(&format!("publishing {container} as {name}"));
    let image = client.publish_image(&request).await;
    drop(progress);
    let image = image.with_context(|| format!("publishing {container} as image {name}"))?;
    if json {
        return output::json(&image);
    }
    let who = if image.public { "every user" } else { "its owner" };
    println!(
        "image {} published ({}), usable by {who}: ssp container create NAME --image {}",
        image.name,
        output::human_bytes(image.size),
        image.name
    );
    Ok(())
}

async fn delete(image: &str) -> anyhow::Result<()> {
    let client = super::connect()?;
    let (owner, name) = match image.split_once('/') {
        Some((owner, name)) => (owner.to_string(), name.to_string()),
        None => (super::caller(&client).await?, image.to_string()),
    };
    ssp_core::names::Name::parse(&owner)?;
    ImageName::parse(&name)?;
    client.delete_image(&owner, &name).await.with_context(|| format!("deleting image {owner}/{name}"))?;
    println!("image {owner}/{name} deleted");
    Ok(())
}

async fn list(json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    let mut images = client.images().await.context("listing images")?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        return output::json(&images);
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|image| {
            vec![
                image.name.clone(),
                match (&image.owner, image.public) {
                    (None, _) => "host".into(),
                    (Some(_), true) => "public".into(),
                    (Some(_), false) => "private".into(),
                },
                image.description.clone(),
                image.fingerprint.chars().take(12).collect(),
                output::human_bytes(image.size),
                output::timestamp(Some(image.created_at)),
            ]
        })
        .collect();
    output::table(&["NAME", "VISIBILITY", "DESCRIPTION", "FINGERPRINT", "SIZE", "CREATED"], &rows);
    Ok(())
}

async fn list_local(json: bool) -> anyhow::Result<()> {
    let lxd = ssp_lxd::Client::from_env()?;
    let mut images = lxd.images().await?;
    images.sort_by(|a, b| a.aliases.first().map(|x| &x.name).cmp(&b.aliases.first().map(|x| &x.name)));
    if json {
        return output::json(&images);
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|image| {
            let aliases: Vec<&str> = image.aliases.iter().map(|a| a.name.as_str()).collect();
            vec![
                if aliases.is_empty() { "-".into() } else { aliases.join(",") },
                image.fingerprint.chars().take(12).collect(),
                image.properties.get(RECIPE_PROPERTY).cloned().unwrap_or_else(|| "-".into()),
                image.properties.get("description").cloned().unwrap_or_default(),
                output::human_bytes(u64::try_from(image.size).unwrap_or(0)),
                image.uploaded_at.chars().take(19).collect(),
            ]
        })
        .collect();
    output::table(&["ALIAS", "FINGERPRINT", "RECIPE", "DESCRIPTION", "SIZE", "UPLOADED"], &rows);
    Ok(())
}

fn recipes(json: bool) -> anyhow::Result<()> {
    let recipes = ssp_image::recipes();
    if json {
        let list: Vec<_> = recipes
            .iter()
            .map(|r| serde_json::json!({ "name": r.name, "description": r.description(), "cache_key": r.cache_key() }))
            .collect();
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = recipes
        .iter()
        .map(|r| {
            let cached = ssp_image::cached(r, &BuildOptions::default_for_host().cache_dir).is_some();
            vec![r.name.clone(), r.description().to_string(), if cached { "yes".into() } else { "no".into() }]
        })
        .collect();
    output::table(&["RECIPE", "DESCRIPTION", "BUILT"], &rows);
    Ok(())
}
