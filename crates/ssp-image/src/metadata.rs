//! `metadata.yaml` and `templates/`: what LXD reads from a unified tarball besides the tree.
//!
//! The metadata is written as JSON, which is valid YAML: no YAML emitter is needed and every
//! string is quoted correctly.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Error;
use crate::install::{CACHE_KEY_PROPERTY, RECIPE_PROPERTY};
use crate::recipe::Recipe;

const HOSTNAME_TEMPLATE: &str = "{{ container.name }}\n";
const HOSTS_TEMPLATE: &str = "127.0.0.1   localhost\n127.0.1.1   {{ container.name }}\n\n\
::1         localhost ip6-localhost ip6-loopback\nff02::1     ip6-allnodes\nff02::2     ip6-allrouters\n";

/// The properties LXD shows for the image, ours included.
pub(crate) fn properties(recipe: &Recipe) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("os".into(), recipe.spec.os.clone()),
        ("release".into(), recipe.spec.release.clone()),
        ("variant".into(), recipe.spec.variant.clone()),
        ("architecture".into(), std::env::consts::ARCH.into()),
        ("description".into(), recipe.spec.description.clone()),
        (RECIPE_PROPERTY.into(), recipe.name.clone()),
        (CACHE_KEY_PROPERTY.into(), recipe.cache_key()),
    ])
}

pub(crate) fn render(properties: &BTreeMap<String, String>, creation_date: u64) -> String {
    let when = ["create", "copy", "rename"];
    let document = serde_json::json!({
        "architecture": std::env::consts::ARCH,
        "creation_date": creation_date,
        "properties": properties,
        "templates": {
            "/etc/hostname": { "when": when, "template": "hostname.tpl" },
            "/etc/hosts": { "when": when, "template": "hosts.tpl" },
        },
    });
    format!("{document:#}\n")
}

/// Writes `metadata.yaml` and `templates/` into `dir`.
pub(crate) fn write(dir: &Path, _recipe: &Recipe, properties: &BTreeMap<String, String>) -> Result<(), Error> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).map_err(Error::io("creating", &templates))?;
    let files = [
        (dir.join("metadata.yaml"), render(properties, now)),
        (templates.join("hostname.tpl"), HOSTNAME_TEMPLATE.to_string()),
        (templates.join("hosts.tpl"), HOSTS_TEMPLATE.to_string()),
    ];
    for (path, content) in files {
        std::fs::write(&path, content).map_err(Error::io("writing", &path))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_recipe_and_templates() {
        let recipe = crate::recipe("busybox").unwrap();
        let text = render(&properties(&recipe), 1_700_000_000);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["creation_date"], 1_700_000_000);
        assert_eq!(doc["properties"]["ssp.recipe"], "busybox");
        assert_eq!(doc["properties"]["ssp.cache_key"], recipe.cache_key());
        assert_eq!(doc["templates"]["/etc/hostname"]["template"], "hostname.tpl");
        assert_eq!(doc["templates"]["/etc/hosts"]["when"][0], "create");
    }
}
