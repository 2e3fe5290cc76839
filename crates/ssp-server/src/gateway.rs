//! The SSH gateway in the daemon: the [`ssp_gateway::Backend`] over the store (its
//! `[gateway]` settings are `config::GatewayConfig`) — users and their keys, containers as the gateway may reach them (as the
//! owner's account, the same way `ssp exec` runs), and the audit log.

use ssp_core::names::Name;
use ssp_gateway::{BackendError, SessionEnd, SessionStart, Target};
use ssp_store::{ContainerPhase, DesiredState};

use crate::db::Db;
use crate::instance;

/// The gateway's view of the store.
#[derive(Debug, Clone)]
pub struct StoreBackend {
    db: Db,
    reconciler: crate::reconcile::handle::ReconcilerHandle,
    desktops: std::sync::Arc<crate::desktop::Desktops>,
}

impl StoreBackend {
    /// Over `db`; desktops are opened through `desktops`.
    pub fn new(
        db: Db,
        reconciler: crate::reconcile::handle::ReconcilerHandle,
        desktops: std::sync::Arc<crate::desktop::Desktops>,
    ) -> Self {
        Self { db, reconciler, desktops }
    }
}

fn backend_error(e: ssp_store::Error) -> BackendError {
    BackendError(e.to_string())
}

impl ssp_gateway::Backend for StoreBackend {
    async fn keys(&self, user: &Name) -> Result<Option<Vec<String>>, BackendError> {
        let user = user.to_string();
        self.db
            .run(move |store| match store.user(&user) {
                Ok(found) if found.disabled => Ok(None),
                Ok(_) => Ok(Some(store.keys(&user)?.into_iter().map(|k| k.public_key).collect())),
                Err(ssp_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            })
            .await
            .map_err(backend_error)
    }

    async fn containers(&self, user: &Name) -> Result<Vec<Target>, BackendError> {
        let user = user.to_string();
        let (rows, mut pins) = self
            .db
            .run(move |store| Ok((store.containers_of(&user)?, store.ssh_host_keys_of(&user)?)))
            .await
            .map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| row.phase != ContainerPhase::Deleting)
            .map(|row| Target {
                ssh_host_key: pins.remove(&row.uid),
                name: row.name.clone(),
                instance: instance::lxd_name(&row),
                running: row.phase == ContainerPhase::Ready && row.desired_state == DesiredState::Running,
                set_up: self.reconciler.account_set_up(&row.uid),
                exec: instance::owner_exec_options(&row),
            })
            .collect())
    }

    async fn session_started(&self, start: SessionStart) -> Result<i64, BackendError> {
        self.db
            .run(move |store| {
                store.gateway_session_start(&start.user, &start.container, &start.kind, &start.source, start.path)
            })
            .await
            .map_err(backend_error)
    }

    async fn desktop(
        &self,
        user: &Name,
        target: &Target,
    ) -> Result<ssp_gateway::desktop::DesktopConnection, BackendError> {
        let (owner, name) = (user.to_string(), target.name.to_string());
        let row = self.db.run(move |store| store.container(&owner, &name)).await.map_err(backend_error)?;
        crate::desktop::openable(&row).map_err(|e| BackendError(e.to_string()))?;
        self.desktops
            .open(&target.instance, user.as_str())
            .await
            .map_err(|e| BackendError(crate::error::ApiError::from(e).to_string()))
    }

    async fn session_ended(&self, id: i64, end: SessionEnd) -> Result<(), BackendError> {
        self.db
            .run(move |store| store.gateway_session_end(id, end.bytes_in, end.bytes_out, end.exit_code))
            .await
            .map_err(backend_error)
    }
}
