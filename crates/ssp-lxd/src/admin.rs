//! Host-level objects: the server itself, hardware resources, profiles, storage pools and
//! volumes, networks.

use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::client::{seg, Body, Client, Tagged};
use crate::error::Result;
use crate::operation::Operation;
use crate::wire::{
    Network, OperationState, Profile, Resources, Server, StoragePool, StoragePoolResources, StorageVolume,
};

impl Client {
    /// What the daemon is (`GET /1.0`): version, API extensions, environment.
    pub async fn server(&self) -> Result<Server> {
        self.get("/1.0").await
    }

    /// The host's hardware (`GET /1.0/resources`).
    pub async fn resources(&self) -> Result<Resources> {
        self.get("/1.0/resources").await
    }

    /// The raw `/1.0/resources` document, for the parts not typed in [`Resources`].
    pub async fn resources_json(&self) -> Result<serde_json::Value> {
        self.get("/1.0/resources").await
    }

    /// All profiles.
    pub async fn profiles(&self) -> Result<Vec<Profile>> {
        self.get("/1.0/profiles?recursion=1").await
    }

    /// One profile, with its ETag.
    pub async fn profile(&self, name: &str) -> Result<Tagged<Profile>> {
        self.get_tagged(&format!("/1.0/profiles/{}", seg(name)?)).await
    }

    /// Creates a profile.
    pub async fn create_profile(&self, profile: &Profile) -> Result<()> {
        seg(&profile.name)?;
        self.call(Method::POST, "/1.0/profiles", Some(profile)).await
    }

    /// Replaces a profile's config, devices and description. With `etag`, fails (412) if it
    /// changed since read.
    pub async fn update_profile(&self, profile: &Profile, etag: Option<&str>) -> Result<()> {
        let path = format!("/1.0/profiles/{}", seg(&profile.name)?);
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag {
            headers.insert("if-match", crate::client::header_value("If-Match", etag)?);
        }
        let body = serde_json::json!({
            "config": profile.config, "devices": profile.devices, "description": profile.description,
        });
        self.raw(Method::PUT, &path, Body::Json(body), headers).await.map(drop)
    }

    /// Deletes a profile (no instance may use it).
    pub async fn delete_profile(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("/1.0/profiles/{}", seg(name)?), None::<()>).await
    }

    /// All storage pools.
    pub async fn storage_pools(&self) -> Result<Vec<StoragePool>> {
        self.get("/1.0/storage-pools?recursion=1").await
    }

    /// One storage pool.
    pub async fn storage_pool(&self, name: &str) -> Result<StoragePool> {
        self.get(&format!("/1.0/storage-pools/{}", seg(name)?)).await
    }

    /// How full a storage pool is (space and inodes, used and total).
    pub async fn storage_pool_resources(&self, name: &str) -> Result<StoragePoolResources> {
        self.get(&format!("/1.0/storage-pools/{}/resources", seg(name)?)).await
    }

    /// Creates a storage pool (for `btrfs` with only `size`, LXD makes a loop file).
    pub async fn create_storage_pool(&self, pool: &StoragePool) -> Result<()> {
        seg(&pool.name)?;
        self.call(Method::POST, "/1.0/storage-pools", Some(pool)).await
    }

    /// Deletes a storage pool (it must be unused); a loop-backed pool's file goes too.
    pub async fn delete_storage_pool(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("/1.0/storage-pools/{}", seg(name)?), None::<()>).await
    }

    /// All volumes of a pool (instances', images' and custom ones).
    pub async fn storage_volumes(&self, pool: &str) -> Result<Vec<StorageVolume>> {
        self.get(&format!("/1.0/storage-pools/{}/volumes?recursion=1", seg(pool)?)).await
    }

    /// One custom volume.
    pub async fn custom_volume(&self, pool: &str, name: &str) -> Result<StorageVolume> {
        self.get(&format!("/1.0/storage-pools/{}/volumes/custom/{}", seg(pool)?, seg(name)?)).await
    }

    /// How many bytes of custom volume `name` are in use, where the pool's driver can say
    /// (btrfs with a quota, zfs, lvm); `None` where it cannot (`dir`).
    pub async fn custom_volume_used(&self, pool: &str, name: &str) -> Result<Option<u64>> {
        #[derive(serde::Deserialize)]
        struct VolumeState {
            usage: Option<VolumeUsage>,
        }
        #[derive(serde::Deserialize)]
        struct VolumeUsage {
            used: u64,
        }
        let state: VolumeState =
            self.get(&format!("/1.0/storage-pools/{}/volumes/custom/{}/state", seg(pool)?, seg(name)?)).await?;
        Ok(state.usage.map(|usage| usage.used))
    }

    /// Creates a custom volume.
    pub async fn create_custom_volume(&self, pool: &str, volume: &StorageVolume) -> Result<()> {
        seg(&volume.name)?;
        let mut body = volume.clone();
        body.kind = "custom".into();
        if body.content_type.is_empty() {
            body.content_type = "filesystem".into();
        }
        self.call(Method::POST, &format!("/1.0/storage-pools/{}/volumes/custom", seg(pool)?), Some(body)).await
    }

    /// Deletes a custom volume (no instance may use it).
    pub async fn delete_custom_volume(&self, pool: &str, name: &str) -> Result<()> {
        let path = format!("/1.0/storage-pools/{}/volumes/custom/{}", seg(pool)?, seg(name)?);
        self.call(Method::DELETE, &path, None::<()>).await
    }

    /// All networks (managed and the host's own interfaces).
    pub async fn networks(&self) -> Result<Vec<Network>> {
        self.get("/1.0/networks?recursion=1").await
    }

    /// One network.
    pub async fn network(&self, name: &str) -> Result<Network> {
        self.get(&format!("/1.0/networks/{}", seg(name)?)).await
    }

    /// Creates a managed network. Give a bridge an explicit `ipv4.address`: LXD's automatic
    /// choice probes random private subnets with pings.
    pub async fn create_network(&self, network: &Network) -> Result<()> {
        seg(&network.name)?;
        self.call(Method::POST, "/1.0/networks", Some(network)).await
    }

    /// Deletes a managed network (no instance or profile may use it).
    pub async fn delete_network(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("/1.0/networks/{}", seg(name)?), None::<()>).await
    }

    /// The operations still running, each ready to wait on (e.g. one a killed client started).
    pub async fn running_operations(&self) -> Result<Vec<Operation>> {
        let all: std::collections::BTreeMap<String, Vec<OperationState>> =
            self.get("/1.0/operations?recursion=1").await?;
        Ok(all
            .into_iter()
            .filter(|(status, _)| status == "running")
            .flat_map(|(_, states)| states)
            .map(|state| Operation::new(self.clone(), state))
            .collect())
    }

    /// One operation by id (e.g. to follow one started elsewhere).
    pub async fn operation_by_id(&self, id: &str) -> Result<Operation> {
        let state = self.get(&format!("/1.0/operations/{}", seg(id)?)).await?;
        Ok(Operation::new(self.clone(), state))
    }
}
