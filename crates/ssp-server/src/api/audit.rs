//! `/api/v1/audit` and `/api/v1/health` (admin): the journal with filters — API actions,
//! sign-ins and their failures, sign-outs, invitations, the reconciler's work — and the health
//! of what ssp depends on. The gateway's sessions have their own log,
//! `/api/v1/gateway/sessions`.
//!
//! Health never fails because a dependency does: each part reports its own error, so the
//! page that shows it still loads while LXD is down.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use ssp_api as api;
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::AppState;

/// How long `/api/v1/health` waits for each LXD call.
const LXD_TIMEOUT: Duration = Duration::from_secs(3);

/// The journal's default page size, and the most one request may ask for.
const DEFAULT_LIMIT: u32 = 200;
const MAX_LIMIT: u32 = 5000;

/// The audit paths in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(audit, health))]
pub struct AuditApi;

/// Merges [`AuditApi`] into the main document.
pub struct AuditDoc;

impl Modify for AuditDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(AuditApi::openapi());
    }
}

/// The audit routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(audit)).route("/health", get(health))
}

/// Which journal entries to list; every filter is optional.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this actor's (exact user name).
    pub actor: Option<String>,
    /// Only actions that start with this (`session.` finds `session.sign_in` and
    /// `session.sign_out`).
    pub action: Option<String>,
    /// Only this object (exact, e.g. `alice` or `alice/dev`).
    pub object: Option<String>,
    /// Only entries at or after these seconds since the epoch.
    pub since: Option<i64>,
    /// At most this many, newest first (default 200, at most 5000).
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// The store's filter: empty text filters are no filter, the limit is capped.
    fn filter(self) -> ssp_store::JournalFilter {
        let given = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        ssp_store::JournalFilter {
            actor: given(self.actor),
            action_prefix: given(self.action),
            object: given(self.object),
            since: self.since,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        }
    }
}

/// The journal, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "system", params(AuditQuery),
    responses((status = 200, body = [api::AuditEntry]), (status = 403, body = api::ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Vec<api::AuditEntry>>> {
    caller.require_admin("read the audit log")?;
    let filter = query.filter();
    let rows = state.db.run(move |store| store.journal_where(&filter)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| api::AuditEntry { at: e.at, actor: e.actor, action: e.action, object: e.object, detail: e.detail })
            .collect(),
    ))
}

/// The health of LXD, the storage pool, the host's memory and GPUs, and the reconciler
/// (admin). A part that cannot be read carries an `error`; the answer is still 200.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = api::Health), (status = 403, body = api::ErrorBody)))]
pub async fn health(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::Health>> {
    caller.require_admin("read the system's health")?;
    let lxd = match tokio::time::timeout(LXD_TIMEOUT, state.lxd.server()).await {
        Ok(Ok(server)) => api::LxdHealth {
            reachable: true,
            version: Some(format!("{} {}", server.environment.server, server.environment.server_version)),
            error: None,
        },
        Ok(Err(e)) => api::LxdHealth { reachable: false, version: None, error: Some(e.to_string()) },
        Err(_) => api::LxdHealth { reachable: false, version: None, error: Some(timed_out()) },
    };
    let name = state.settings.pool.as_str().to_string();
    let pool = if lxd.reachable {
        match tokio::time::timeout(LXD_TIMEOUT, state.lxd.storage_pool_resources(&name)).await {
            Ok(Ok(r)) => api::PoolHealth { name, used: Some(r.space.used), total: Some(r.space.total), error: None },
            Ok(Err(e)) => api::PoolHealth { name, used: None, total: None, error: Some(e.to_string()) },
            Err(_) => api::PoolHealth { name, used: None, total: None, error: Some(timed_out()) },
        }
    } else {
        api::PoolHealth { name, used: None, total: None, error: Some("LXD is not reachable".into()) }
    };
    let memory = match tokio::fs::read_to_string("/proc/meminfo").await {
        Ok(text) => {
            let (total, available) = parse_meminfo(&text);
            let error = (total.is_none() || available.is_none())
                .then(|| "/proc/meminfo lacks MemTotal or MemAvailable".to_string());
            api::MemoryHealth { total, available, error }
        }
        Err(e) => api::MemoryHealth { total: None, available: None, error: Some(format!("/proc/meminfo: {e}")) },
    };
    let records = state.gpus.records();
    let (samples, sampled_at) = state.gpus.samples();
    let unhealthy = match sampled_at {
        Some(_) => records.iter().filter(|g| !samples.iter().any(|s| s.index == g.index)).count(),
        None => 0,
    };
    let gpus = api::GpusHealth {
        source: state.gpus.kind().into(),
        count: count(records.len()),
        unhealthy: count(unhealthy),
        sampled_at,
        failed_probes: count(state.reconciler.failed_gpu_probes()),
    };
    let reconciler = api::ReconcilerHealth { problems: count(state.reconciler.problems()) };
    Ok(Json(api::Health { lxd, pool, memory, gpus, reconciler }))
}

fn timed_out() -> String {
    format!("no answer within {} s", LXD_TIMEOUT.as_secs())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `MemTotal` and `MemAvailable` of a `/proc/meminfo` text, in bytes (the file says kB,
/// meaning KiB).
fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            match words.next() {
                Some("kB") => value.checked_mul(1024),
                None => Some(value),
                Some(_) => None,
            }
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::{parse_meminfo, AuditQuery};

    #[test]
    fn meminfo_gives_total_and_available_in_bytes() {
        let real = "MemTotal:       16318480 kB\nMemFree:         1131432 kB\nMemAvailable:    9876543 kB\n";
        type Both = (Option<u64>, Option<u64>);
        let cases: [(&str, Both); 5] = [
            (real, (Some(16_318_480 * 1024), Some(9_876_543 * 1024))),
            ("MemAvailable: 2 kB\nMemTotal: 4 kB\n", (Some(4096), Some(2048))),
            ("MemTotal: 4 kB\n", (Some(4096), None)),
            ("MemTotalX: 4 kB\nMemTotal: x kB\nMemAvailable: 3 MB\n", (None, None)),
            ("", (None, None)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_meminfo(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_audit_query_drops_empty_filters_and_caps_the_limit() {
        let filter =
            AuditQuery { actor: Some(" ".into()), action: Some("session.".into()), ..Default::default() }.filter();
        assert_eq!((filter.actor, filter.action_prefix.as_deref(), filter.limit), (None, Some("session."), 200));
        assert_eq!(AuditQuery { limit: Some(999_999), ..Default::default() }.filter().limit, 5000);
        assert_eq!(AuditQuery { limit: Some(0), ..Default::default() }.filter().limit, 1);
    }

    #[test]
    fn audit_routes_are_documented() {
        let doc = crate::api::ApiDoc::openapi();
        assert!(doc.paths.paths.contains_key("/api/v1/audit"));
        assert!(doc.paths.paths.contains_key("/api/v1/health"));
    }
}
