//! Between the store's types and the API's wire types.

use ssp_api as api;
use ssp_core::quota::Quota;
use ssp_core::size::ByteSize;

use crate::error::ApiError;

/// Store role to wire role.
pub fn role(role: ssp_store::Role) -> api::Role {
    match role {
        ssp_store::Role::Admin => api::Role::Admin,
        ssp_store::Role::User => api::Role::User,
    }
}

/// Wire role to store role.
pub fn store_role(role: api::Role) -> ssp_store::Role {
    match role {
        api::Role::Admin => ssp_store::Role::Admin,
        api::Role::User => ssp_store::Role::User,
    }
}

/// A quota for the wire.
pub fn quota(quota: &Quota) -> api::Quota {
    api::Quota {
        max_containers: quota.max_containers,
        max_cpus: quota.max_cpus,
        max_memory: quota.max_memory.to_string(),
        max_disk: quota.max_disk.to_string(),
        max_gpus: quota.max_gpus,
    }
}

/// `base` with the fields `patch` sets; sizes parsed (zero allowed: it forbids).
pub fn patch_quota(base: &Quota, patch: &api::QuotaPatch) -> Result<Quota, ApiError> {
    let size = |key: &str, value: &Option<String>, old: ByteSize| -> Result<ByteSize, ApiError> {
        match value {
            Some(text) => ByteSize::parse(text).map_err(|e| ApiError::BadRequest(format!("{key}: {e}"))),
            None => Ok(old),
        }
    };
    Ok(Quota {
        max_containers: patch.max_containers.unwrap_or(base.max_containers),
        max_cpus: patch.max_cpus.unwrap_or(base.max_cpus),
        max_memory: size("max_memory", &patch.max_memory, base.max_memory)?,
        max_disk: size("max_disk", &patch.max_disk, base.max_disk)?,
        max_gpus: patch.max_gpus.unwrap_or(base.max_gpus),
    })
}

/// Desired state, both ways.
pub fn desired(state: ssp_store::DesiredState) -> api::DesiredState {
    match state {
        ssp_store::DesiredState::Running => api::DesiredState::Running,
        ssp_store::DesiredState::Stopped => api::DesiredState::Stopped,
    }
}

/// Wire desired state to store desired state.
pub fn store_desired(state: api::DesiredState) -> ssp_store::DesiredState {
    match state {
        api::DesiredState::Running => ssp_store::DesiredState::Running,
        api::DesiredState::Stopped => ssp_store::DesiredState::Stopped,
    }
}

/// Phase for the wire.
pub fn phase(phase: ssp_store::ContainerPhase) -> api::Phase {
    match phase {
        ssp_store::ContainerPhase::Creating => api::Phase::Creating,
        ssp_store::ContainerPhase::Ready => api::Phase::Ready,
        ssp_store::ContainerPhase::Deleting => api::Phase::Deleting,
        ssp_store::ContainerPhase::Lost => api::Phase::Lost,
    }
}

/// The name people use for an image: a user's published image's LXD alias
/// (`ssp_<platform>_<owner>_<name>`) reads as `owner/name`.
pub fn image_name(alias: &str) -> String {
    let mut parts = alias.splitn(4, '_');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ssp"), Some(_), Some(owner), Some(name)) => format!("{owner}/{name}"),
        _ => alias.to_string(),
    }
}

/// A stored container with what LXD says of it.
pub fn container(
    row: &ssp_store::Container,
    status: Option<&str>,
    addresses: Vec<String>,
    problem: Option<String>,
) -> api::Container {
    api::Container {
        owner: row.owner.as_str().into(),
        name: row.name.as_str().into(),
        image: image_name(&row.image),
        cpus: row.cpus,
        memory: row.memory.to_string(),
        disk: row.disk.to_string(),
        desired_state: desired(row.desired_state),
        phase: phase(row.phase),
        status: status.unwrap_or("Missing").into(),
        addresses,
        problem,
        problem_at: None,
        next_try_at: None,
        waiting_for: None,
        pending: None,
        converged: false,
        gpus: Vec::new(),
        gpu_health: None,
        created_at: row.created_at,
        ssh_host_key: None,
        desktop: row.desktop,
    }
}
