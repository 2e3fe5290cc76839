//! `/api/v1/info`, `/api/v1/images` and `/api/v1/reconcile`: what the caller is talking to,
//! what containers can be made from, and an on-demand reconcile pass for admins.

use axum::extract::State;
use axum::Json;
use ssp_api as api;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Who the caller is and what they are talking to.
#[utoipa::path(get, path = "/api/v1/info", tag = "system", responses((status = 200, body = api::Info)))]
pub async fn info(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::Info>> {
    let backend = match state.lxd.server().await {
        Ok(server) => format!("{} {}", server.environment.server, server.environment.server_version),
        Err(e) => format!("unreachable ({e})"),
    };
    Ok(Json(api::Info {
        version: env!("CARGO_PKG_VERSION").into(),
        user: caller.name.clone(),
        role: caller.role,
        backend,
        tls_fingerprint: state.tls_fingerprint.clone(),
        gateway: state.gateway.clone(),
    }))
}

/// Images containers can be made from: the host's (LXD images with an alias) and the users'
/// published images the caller may use (`owner/name`).
#[utoipa::path(get, path = "/api/v1/images", tag = "system", responses((status = 200, body = [api::Image])))]
pub async fn images(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<api::Image>>> {
    let mut images: Vec<api::Image> = state
        .lxd
        .images()
        .await?
        .into_iter()
        .flat_map(|image| {
            let description = image.properties.get("description").cloned().unwrap_or_default();
            let created_at = parse_rfc3339_seconds(&image.created_at);
            image
                .aliases
                .iter()
                .filter(|alias| !super::shared::is_user_alias(&alias.name))
                .map(move |alias| api::Image {
                    name: alias.name.clone(),
                    description: description.clone(),
                    fingerprint: image.fingerprint.clone(),
                    size: u64::try_from(image.size).unwrap_or(0),
                    created_at,
                    owner: None,
                    public: true,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    images.extend(super::shared::visible_images(&state, &caller).await?);
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(images))
}

/// Runs one reconcile pass now and reports what it did (admin).
#[utoipa::path(post, path = "/api/v1/reconcile", tag = "system",
    responses((status = 200, body = api::ReconcileReport), (status = 403, body = api::ErrorBody)))]
pub async fn reconcile(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<api::ReconcileReport>> {
    caller.require_admin("run a reconcile pass")?;
    let report = state.reconciler_pass.pass().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(report))
}

/// Seconds since the epoch of an RFC 3339 UTC time as LXD writes it; 0 if unreadable.
fn parse_rfc3339_seconds(text: &str) -> i64 {
    let digits = |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d), Some(h), Some(min), Some(s)) =
        (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19))
    else {
        return 0;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + min * 60 + s
}

#[cfg(test)]
mod tests {
    #[test]
    fn lxd_times_become_epoch_seconds() {
        assert_eq!(super::parse_rfc3339_seconds("1970-01-01T00:00:00Z"), 0);
        assert_eq!(super::parse_rfc3339_seconds("2024-02-29T12:30:15.123456Z"), 1_709_209_815);
        assert_eq!(super::parse_rfc3339_seconds("garbage"), 0);
    }
}
