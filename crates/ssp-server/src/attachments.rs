//! Gathers each container's [`Attachments`] — what other tables say about it — in the one
//! store read a reconciler pass makes. Each feature that shapes containers (SSH keys, GPU
//! leases, shares, volumes, the gateway's socket) adds its part here from its own module,
//! so `instance.rs` stays a pure function of the row and these values.

use std::collections::{BTreeMap, HashMap};

use ssp_store::{Container, Store};

use crate::instance::{Attachments, Layout};

/// The attachments of every row in `rows`, by container uid.
pub fn load(store: &Store, rows: &[Container], layout: &Layout) -> ssp_store::Result<HashMap<String, Attachments>> {
    let mut keys_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut gpus_of = store.gpus_by_container()?;
    let inventory: Vec<_> =
        if gpus_of.is_empty() { Vec::new() } else { store.gpus()?.into_iter().map(|g| g.record).collect() };
    let mut all = HashMap::with_capacity(rows.len());
    for row in rows {
        let owner = row.owner.as_str();
        if !keys_of.contains_key(owner) {
            let lines = store.keys(owner)?.into_iter().map(|k| k.public_key).collect();
            keys_of.insert(owner.to_string(), lines);
        }
        let mut attachments = Attachments { keys: keys_of[owner].clone(), ..Attachments::default() };
        if let Some(held) = gpus_of.remove(&row.uid) {
            let (config, devices) = crate::gpu::devices::attachments(&held, &inventory, &layout.gpu);
            attachments.config.extend(config);
            attachments.devices.extend(devices);
            attachments.gpus = held;
        }
        all.insert(row.uid.clone(), attachments);
    }
    crate::storage::attach(store, rows, &mut all)?;
    Ok(all)
}
