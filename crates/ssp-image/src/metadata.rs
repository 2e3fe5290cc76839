//! `metadata.yaml` and `templates/`: what LXD reads from a unified tarball besides `rootfs/`.
//!
//! `metadata.yaml` is written as JSON, which is valid YAML (LXD parses it with its YAML
//! parser): no YAML emitter is needed and every string is quoted and escaped correctly.
//! Pure: the caller supplies the clock and the architecture.

use std::collections::BTreeMap;

use crate::recipe::Recipe;

/// Image property naming the recipe an image was built from.
pub const RECIPE_PROPERTY: &str = "ssp.recipe";
/// Image property holding the recipe's [`Recipe::cache_key`] at build time: an image in LXD
/// with the current key is up to date.
pub const CACHE_KEY_PROPERTY: &str = "ssp.cache_key";

/// LXD renders these with the instance's name when an instance is created, copied or renamed.
const HOSTNAME_TEMPLATE: &str = "{{ container.name }}\n";
const HOSTS_TEMPLATE: &str = "127.0.0.1   localhost\n\
127.0.1.1   {{ container.name }}\n\
::1         localhost ip6-localhost ip6-loopback\n\
ff02::1     ip6-allnodes\n\
ff02::2     ip6-allrouters\n";

/// The image properties: what `lxc image info` shows, and what ssp finds its images by.
pub(crate) fn properties(recipe: &Recipe, architecture: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("architecture".into(), architecture.into()),
        ("description".into(), recipe.spec.description.clone()),
        ("os".into(), recipe.spec.os.clone()),
        ("release".into(), recipe.spec.release.clone()),
        ("variant".into(), recipe.spec.variant.clone()),
        (RECIPE_PROPERTY.into(), recipe.name.clone()),
        (CACHE_KEY_PROPERTY.into(), recipe.cache_key()),
    ])
}

/// `metadata.yaml` for an image of `architecture` made at `creation_date` (unix seconds).
pub(crate) fn render(properties: &BTreeMap<String, String>, architecture: &str, creation_date: u64) -> String {
    let when = ["create", "copy", "rename"];
    let document = serde_json::json!({
        "architecture": architecture,
        "creation_date": creation_date,
        "properties": properties,
        "templates": {
            "/etc/hostname": { "when": when, "template": "hostname.tpl" },
            "/etc/hosts": { "when": when, "template": "hosts.tpl" },
        },
    });
    format!("{document:#}\n")
}

/// Every file of the tarball outside `rootfs/`, as (path in the tarball, content).
pub(crate) fn files(
    properties: &BTreeMap<String, String>,
    architecture: &str,
    creation_date: u64,
) -> [(&'static str, String); 3] {
    [
        ("metadata.yaml", render(properties, architecture, creation_date)),
        ("templates/hostname.tpl", HOSTNAME_TEMPLATE.into()),
        ("templates/hosts.tpl", HOSTS_TEMPLATE.into()),
    ]
}

/// The host's architecture as the kernel names it (`uname -m`: `x86_64`, `aarch64`), which
/// is how LXD names architectures too.
pub(crate) fn host_architecture() -> String {
    rustix::system::uname().machine().to_string_lossy().into_owned()
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_recipe_and_templates() {
        let recipe = crate::recipe("busybox").unwrap();
        let props = properties(&recipe, "x86_64");
        let text = render(&props, "x86_64", 1_700_000_000);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["architecture"], "x86_64");
        assert_eq!(doc["creation_date"], 1_700_000_000);
        for key in ["os", "release", "variant", "description", "ssp.recipe", "ssp.cache_key"] {
            assert!(doc["properties"][key].is_string(), "{key}");
        }
        assert_eq!(doc["properties"]["ssp.recipe"], "busybox");
        assert_eq!(doc["properties"]["ssp.cache_key"], recipe.cache_key());
        assert_eq!(doc["properties"]["os"], "BusyBox");
        for (path, template) in [("/etc/hostname", "hostname.tpl"), ("/etc/hosts", "hosts.tpl")] {
            assert_eq!(doc["templates"][path]["template"], template);
            assert_eq!(doc["templates"][path]["when"], serde_json::json!(["create", "copy", "rename"]));
        }
        let names: Vec<&str> = files(&props, "x86_64", 0).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["metadata.yaml", "templates/hostname.tpl", "templates/hosts.tpl"]);
    }

    #[test]
    fn odd_strings_stay_quoted() {
        let mut props = BTreeMap::new();
        props.insert("description".to_string(), "a: b\n- c # \"d\"".to_string());
        let doc: serde_json::Value = serde_json::from_str(&render(&props, "x86_64", 1)).unwrap();
        assert_eq!(doc["properties"]["description"], "a: b\n- c # \"d\"");
    }

    #[test]
    fn architecture_is_the_kernels_name() {
        let arch = host_architecture();
        assert!(!arch.is_empty() && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{arch}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arch, "x86_64");
        }
    }
}
