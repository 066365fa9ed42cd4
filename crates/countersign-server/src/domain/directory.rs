//! What a change from the organisation's directory (SCIM) does: the approver's name and groups
//! follow the directory; deactivating, deleting or renaming a person revokes the keys of the
//! approver they were (so every stream those keys opened ends, on every replica, through the
//! `key_revoked` events) and ends their sessions; every change is an audit event by
//! `scim:<client>`. Pending requests need nothing rewritten: who may decide is checked
//! against the approver's groups at the moment of deciding.

use countersign_core::{Actor, AuditEvent, EventKind, KeyId};
use countersign_store::{DirectoryGroup, DirectoryUser, Expected, NewEvent};

use super::DomainResult;
use crate::state::AppState;

fn actor(client: &str) -> Actor {
    Actor::Admin(format!("scim:{client}"))
}

fn changed(client: &str, operation: &str, subject: &str, detail: String) -> NewEvent {
    NewEvent::new(
        actor(client),
        EventKind::AdminChanged {
            operation: operation.to_owned(),
            subject: subject.to_owned(),
            detail,
        },
    )
}

/// The Countersign group a directory group counts as: the configured map names it, or nothing.
pub fn maps_to(state: &AppState, display_name: &str) -> Option<String> {
    state.config.scim.groups.get(display_name).cloned()
}

/// The active keys of `approver_id`, with a `key_revoked` event each.
async fn revocations(
    state: &AppState,
    client: &str,
    approver_id: &str,
    reason: &str,
    keys: &mut Vec<KeyId>,
    events: &mut Vec<NewEvent>,
) -> DomainResult<()> {
    for key in state.store.keys(Some(approver_id)).await? {
        if key.revoked_at.is_none() && !keys.contains(&key.key_id) {
            keys.push(key.key_id);
            events.push(NewEvent::new(
                actor(client),
                EventKind::KeyRevoked {
                    approver_id: approver_id.to_owned(),
                    key_id: key.key_id,
                    reason: reason.to_owned(),
                },
            ));
        }
    }
    Ok(())
}

/// Writes `next` over `stored` (none: a new person) expecting `expected`.
pub async fn write_user(
    state: &AppState,
    client: &str,
    stored: Option<&DirectoryUser>,
    next: &DirectoryUser,
    display_name: &str,
    expected: Expected,
) -> DomainResult<Vec<AuditEvent>> {
    let operation = match stored {
        None => "directory_user_created",
        Some(s) if s.active && !next.active => "directory_user_deactivated",
        Some(s) if !s.active && next.active => "directory_user_reactivated",
        Some(_) => "directory_user_updated",
    };
    let mut events = vec![changed(
        client,
        operation,
        &next.approver_id,
        format!(
            "{} ({}), directory id {}",
            display_name,
            if next.active { "active" } else { "inactive" },
            next.id
        ),
    )];
    let mut revoke = Vec::new();
    if let Some(s) = stored
        && s.approver_id != next.approver_id
    {
        events.push(changed(
            client,
            "directory_user_renamed",
            &s.approver_id,
            format!("now {}", next.approver_id),
        ));
        revocations(
            state,
            client,
            &s.approver_id,
            "renamed in the directory",
            &mut revoke,
            &mut events,
        )
        .await?;
    }
    if !next.active {
        revocations(
            state,
            client,
            &next.approver_id,
            "deactivated in the directory",
            &mut revoke,
            &mut events,
        )
        .await?;
    }
    let now = state.now();
    let appended = state
        .store
        .put_directory_user(next, expected, display_name, &revoke, events, now)
        .await?;
    state.publish(&appended);
    Ok(appended)
}

/// Deletes `stored`, expecting `expected`.
pub async fn delete_user(
    state: &AppState,
    client: &str,
    stored: &DirectoryUser,
    expected: Expected,
) -> DomainResult<Vec<AuditEvent>> {
    let mut events = vec![changed(
        client,
        "directory_user_deleted",
        &stored.approver_id,
        format!("directory id {}", stored.id),
    )];
    let mut revoke = Vec::new();
    revocations(
        state,
        client,
        &stored.approver_id,
        "deleted from the directory",
        &mut revoke,
        &mut events,
    )
    .await?;
    let appended = state
        .store
        .delete_directory_user(stored.id, expected, &revoke, events, state.now())
        .await?;
    state.publish(&appended);
    Ok(appended)
}

/// Writes `next` over `stored` (none: a new group) expecting `expected`; `names` gives the
/// approver of each member for the log.
pub async fn write_group(
    state: &AppState,
    client: &str,
    stored: Option<&DirectoryGroup>,
    next: &DirectoryGroup,
    expected: Expected,
    names: &(dyn Fn(&uuid::Uuid) -> String + Sync),
) -> DomainResult<Vec<AuditEvent>> {
    let before: &[uuid::Uuid] = stored.map(|s| s.members.as_slice()).unwrap_or_default();
    let added: Vec<String> = next
        .members
        .iter()
        .filter(|m| !before.contains(m))
        .map(names)
        .collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|m| !next.members.contains(m))
        .map(names)
        .collect();
    let mut detail = match &next.maps_to {
        Some(g) => format!("counts as {g}"),
        None => "grants no Countersign group".to_owned(),
    };
    if !added.is_empty() {
        detail.push_str(&format!("; added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        detail.push_str(&format!("; removed {}", removed.join(", ")));
    }
    if let Some(s) = stored
        && s.display_name != next.display_name
    {
        detail.push_str(&format!("; renamed from {}", s.display_name));
    }
    let operation = if stored.is_some() {
        "directory_group_updated"
    } else {
        "directory_group_created"
    };
    let events = vec![changed(client, operation, &next.display_name, detail)];
    let appended = state
        .store
        .put_directory_group(next, expected, events, state.now())
        .await?;
    state.publish(&appended);
    Ok(appended)
}

/// Deletes `stored`, expecting `expected`.
pub async fn delete_group(
    state: &AppState,
    client: &str,
    stored: &DirectoryGroup,
    expected: Expected,
) -> DomainResult<Vec<AuditEvent>> {
    let events = vec![changed(
        client,
        "directory_group_deleted",
        &stored.display_name,
        format!("{} members", stored.members.len()),
    )];
    let appended = state
        .store
        .delete_directory_group(stored.id, expected, events, state.now())
        .await?;
    state.publish(&appended);
    Ok(appended)
}

/// Brings every directory group's mapping in line with the configuration (which may have
/// changed since the service last ran), recomputing its members' groups; each change is
/// logged as the service's.
pub async fn apply_mapping(state: &AppState) -> DomainResult<()> {
    for group in state.store.directory_groups().await? {
        let wanted = maps_to(state, &group.display_name);
        if wanted == group.maps_to {
            continue;
        }
        let next = DirectoryGroup {
            maps_to: wanted.clone(),
            version: group.version + 1,
            updated_at: state.now(),
            ..group.clone()
        };
        let event = NewEvent::new(
            Actor::System,
            EventKind::AdminChanged {
                operation: "directory_group_remapped".into(),
                subject: group.display_name.clone(),
                detail: match wanted {
                    Some(g) => format!("counts as {g} (configuration)"),
                    None => "grants no Countersign group (configuration)".into(),
                },
            },
        );
        match state
            .store
            .put_directory_group(
                &next,
                Expected::Version(group.version),
                vec![event],
                state.now(),
            )
            .await
        {
            Ok(appended) => state.publish(&appended),
            // Another replica starting with the same configuration got there first, or the
            // directory changed the group meanwhile (and its write mapped it afresh).
            Err(countersign_store::StoreError::Conflict(countersign_store::Conflict::Stale)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
