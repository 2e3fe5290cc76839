//! `/api/v1/shares`: host folders shared into users' containers (admin only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ssp_api as api;
use ssp_core::names::Name;
use ssp_core::sharepath::ContainerPath;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::storage;
use crate::AppState;

fn wire(share: ssp_store::Share) -> api::Share {
    let group = storage::context().and_then(|context| context.block().share_group(share.group?).ok()).map(|group| {
        api::ShareGroup {
            name: ssp_core::idblock::group_name(share.name.as_str(), &group),
            gid: group.host,
            inside_gid: group.inside,
        }
    });
    api::Share {
        name: share.name.to_string(),
        host_path: share.host_path,
        path: share.path,
        read_only: share.read_only,
        users: share.users,
        created_at: share.created_at,
        group,
        host_changes: Vec::new(),
    }
}

/// Lists shares: an admin sees all of them; a user those mounted in their containers, with
/// the host folder and the other members left out (where it appears inside, read-only or
/// not, and its group are what they need).
#[utoipa::path(get, path = "/api/v1/shares", tag = "shares", responses((status = 200, body = [api::Share])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<api::Share>>> {
    let all = state.db.run(|s| s.all_shares()).await?.into_iter().map(wire);
    if caller.is_admin() {
        return Ok(Json(all.collect()));
    }
    Ok(Json(all.filter_map(|share| as_seen_by(share, &caller.name)).collect()))
}

/// `share` as user `user` sees it: only if it is theirs (everyone's, or theirs by name),
/// without the host folder and the other members.
fn as_seen_by(share: api::Share, user: &str) -> Option<api::Share> {
    let everyone = share.users.is_empty();
    if !everyone && !share.users.iter().any(|u| u == user) {
        return None;
    }
    Some(api::Share {
        host_path: String::new(),
        users: if everyone { Vec::new() } else { vec![user.to_string()] },
        ..share
    })
}

/// Shares a host folder into containers — everyone's, or the named users' (admin). The
/// folder must exist; it is mounted `nosuid,nodev` (read-only if asked) at `path`. A
/// read-write share's folder is given to a new share group (group, mode g+rwxs, ACLs; the
/// answer's `host_changes` say what changed) that its users' accounts are members of.
#[utoipa::path(post, path = "/api/v1/shares", tag = "shares", request_body = api::ShareCreate,
    responses((status = 201, body = api::Share), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<api::ShareCreate>,
) -> ApiResult<(StatusCode, Json<api::Share>)> {
    caller.require_admin("share host folders")?;
    let name = Name::parse(&request.name)?;
    let path = match &request.path {
        Some(path) => ContainerPath::parse(path).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => ContainerPath::for_share(&name),
    };
    let users =
        request.users.as_ref().map(|u| u.iter().map(|n| Name::parse(n)).collect::<Result<Vec<_>, _>>()).transpose()?;
    let context = storage::context().ok_or_else(|| ApiError::Unavailable("storage is not set up".into()))?;
    if !context.delegated {
        return Err(ApiError::Conflict(format!(
            "shares need host ids {}-{} delegated to root in /etc/subuid and /etc/subgid; run scripts/up on the host, restart LXD, then try again",
            context.share_base,
            u64::from(context.share_base) + u64::from(context.share_count) - 1
        )));
    }
    let host_path = {
        let (context, given) = (context.clone(), request.host_path.clone());
        tokio::task::spawn_blocking(move || storage::shares::check_host_folder(&context, &given))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::BadRequest)?
    };
    let new = ssp_store::NewShare {
        name,
        host_path,
        path: path.to_string(),
        read_only: request.read_only,
        users,
        group_limit: context.block().group_limit(),
    };
    let actor = caller.name.clone();
    let made = state.db.run(move |s| s.create_share(Some(&actor), &new)).await.map_err(|e| match e {
        ssp_store::Error::NotFound { kind: "user", name } => {
            ApiError::BadRequest(format!("user {name} does not exist"))
        }
        other => other.into(),
    })?;
    // A read-write share's folder becomes its group's before anyone mounts it; if that
    // fails, the share is removed again (its group number stays used: the folder may be
    // half changed).
    let mut host_changes = Vec::new();
    if let Some(group) = made.group.and_then(|g| context.block().share_group(g).ok()) {
        let group_name = ssp_core::idblock::group_name(made.name.as_str(), &group);
        let host_path = made.host_path.clone();
        let prepared =
            tokio::task::spawn_blocking(move || storage::shares::prepare_host_folder(&host_path, &group, &group_name))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        match prepared {
            Ok(changes) => host_changes = changes,
            Err(e) => {
                let (actor, name) = (caller.name.clone(), made.name.to_string());
                state.db.run(move |s| s.remove_share(Some(&actor), &name)).await?;
                return Err(ApiError::BadRequest(format!(
                    "share {} not added: {e}; fix that, or share it read-only (--ro), and try again",
                    made.name
                )));
            }
        }
    }
    // Stage it now (the worker would, within its interval), then let the reconciler attach it.
    if let Err(e) = storage::shares::converge(&state).await {
        tracing::warn!("staging share {}: {e}", made.name);
    }
    state.reconciler.wake();
    let mut answer = wire(made);
    answer.host_changes = host_changes;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Stops sharing a folder: it is unmounted from every container (admin). The host folder
/// is left as it is, its group and ACLs included (the group's number is never given again).
#[utoipa::path(delete, path = "/api/v1/shares/{share}", tag = "shares",
    responses((status = 204), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub async fn remove(State(state): State<AppState>, caller: Caller, Path(share): Path<String>) -> ApiResult<StatusCode> {
    caller.require_admin("remove shares")?;
    let name = Name::parse(&share)?;
    let actor = caller.name.clone();
    state.db.run(move |s| s.remove_share(Some(&actor), name.as_str())).await?;
    // Detach first (the next pass no longer attaches it), then unstage.
    if let Err(e) = state.reconciler_pass.pass().await {
        tracing::warn!("reconciling after removing share {share}: {e}");
    }
    if let Err(e) = storage::shares::converge(&state).await {
        tracing::warn!("unstaging share {share}: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(users: &[&str]) -> api::Share {
        api::Share {
            name: "lab".into(),
            host_path: "/srv/lab".into(),
            path: "/shares/lab".into(),
            read_only: false,
            users: users.iter().map(|u| (*u).to_string()).collect(),
            created_at: 0,
            group: None,
            host_changes: Vec::new(),
        }
    }

    #[test]
    fn a_user_sees_their_shares_without_the_host_folder_or_the_others() {
        // (the share's users, alice sees it, the users she is shown)
        let table: [(&[&str], bool, &[&str]); 4] = [
            (&[], true, &[]),
            (&["alice"], true, &["alice"]),
            (&["bob", "alice", "carol"], true, &["alice"]),
            (&["bob"], false, &[]),
        ];
        for (users, seen, shown) in table {
            let got = as_seen_by(share(users), "alice");
            assert_eq!(got.is_some(), seen, "{users:?}");
            if let Some(got) = got {
                assert_eq!(got.host_path, "", "{users:?}");
                assert_eq!(got.users, shown.iter().map(|u| (*u).to_string()).collect::<Vec<_>>(), "{users:?}");
                assert_eq!((got.path.as_str(), got.read_only), ("/shares/lab", false));
            }
        }
    }
}
