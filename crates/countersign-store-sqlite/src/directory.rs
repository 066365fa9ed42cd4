//! People and groups provisioned by the organisation's directory (SCIM), and what they do to
//! approvers: groups recomputed, keys revoked, sessions ended, in the transaction that records
//! the change.

use async_trait::async_trait;
use countersign_core::{AuditEvent, EncodedEvent, KeyId, Timestamp};
use countersign_store::{
    Directory, DirectoryGroup, DirectoryUser, Expected, NewEvent, StoreError, StoreResult, rules,
};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::SqliteStore;
use crate::audit;
use crate::codec::{col, to_json, ts, uuid};
use crate::query::{execute, select, select_one};

fn version(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("directory version {v}")))
}

fn stored_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn user(row: &Row<'_>) -> StoreResult<DirectoryUser> {
    Ok(DirectoryUser {
        id: uuid(&col::<String>(row, "id")?)?,
        approver_id: col(row, "approver_id")?,
        external_id: col(row, "external_id")?,
        active: col::<i64>(row, "active")? != 0,
        attributes: col(row, "attributes")?,
        version: version(col(row, "version")?)?,
        created_at: ts(col(row, "created_at")?)?,
        updated_at: ts(col(row, "updated_at")?)?,
    })
}

fn user_by_id(conn: &Connection, id: Uuid) -> StoreResult<Option<DirectoryUser>> {
    select_one(
        conn,
        "SELECT * FROM directory_users WHERE id = ?",
        [id.to_string()],
        user,
    )
}

fn user_of(conn: &Connection, approver_id: &str) -> StoreResult<Option<DirectoryUser>> {
    select_one(
        conn,
        "SELECT * FROM directory_users WHERE approver_id = ?",
        [approver_id],
        user,
    )
}

fn members(conn: &Connection, group_id: &str) -> StoreResult<Vec<Uuid>> {
    select(
        conn,
        "SELECT m.user_id FROM directory_members m JOIN directory_users u ON u.id = m.user_id
         WHERE m.group_id = ? ORDER BY u.created_at, u.id",
        [group_id],
        |row| uuid(&col::<String>(row, "user_id")?),
    )
}

fn group(conn: &Connection, row: &Row<'_>) -> StoreResult<DirectoryGroup> {
    let id: String = col(row, "id")?;
    Ok(DirectoryGroup {
        id: uuid(&id)?,
        display_name: col(row, "display_name")?,
        external_id: col(row, "external_id")?,
        maps_to: col(row, "maps_to")?,
        members: members(conn, &id)?,
        version: version(col(row, "version")?)?,
        created_at: ts(col(row, "created_at")?)?,
        updated_at: ts(col(row, "updated_at")?)?,
    })
}

fn group_by_id(conn: &Connection, id: Uuid) -> StoreResult<Option<DirectoryGroup>> {
    select_one(
        conn,
        "SELECT * FROM directory_groups WHERE id = ?",
        [id.to_string()],
        |row| group(conn, row),
    )
}

/// Sets the approver's groups from the directory: the mapped groups the user is in.
fn recompute_groups(conn: &Connection, user_id: Uuid) -> StoreResult<()> {
    let Some(u) = user_by_id(conn, user_id)? else {
        return Ok(());
    };
    let mapped = select(
        conn,
        "SELECT g.maps_to FROM directory_groups g JOIN directory_members m ON m.group_id = g.id
         WHERE m.user_id = ? AND g.maps_to IS NOT NULL",
        [user_id.to_string()],
        |row| col::<String>(row, "maps_to"),
    )?;
    let groups = rules::directory_groups(u.active, mapped);
    execute(
        conn,
        "UPDATE approvers SET groups_json = ? WHERE id = ?",
        params![to_json(&groups)?, u.approver_id],
    )?;
    Ok(())
}

/// Revokes `keys` of `approver_id` and ends their sessions; then none may be left active.
fn deprovision(
    conn: &Connection,
    approver_id: &str,
    keys: &[KeyId],
    now: Timestamp,
) -> StoreResult<()> {
    for key in keys {
        execute(
            conn,
            "UPDATE approver_keys SET revoked_at = ? WHERE key_id = ? AND approver_id = ? AND revoked_at IS NULL",
            params![now.as_millis(), key.to_string(), approver_id],
        )?;
    }
    execute(
        conn,
        "DELETE FROM sessions WHERE approver_id = ?",
        [approver_id],
    )?;
    let left = select_one(
        conn,
        "SELECT COUNT(*) AS n FROM approver_keys WHERE approver_id = ? AND revoked_at IS NULL",
        [approver_id],
        |row| col::<i64>(row, "n"),
    )?
    .unwrap_or(0);
    rules::check_deprovisioned(usize::try_from(left).unwrap_or(usize::MAX))
}

fn put_user(
    conn: &Connection,
    u: &DirectoryUser,
    expected: Expected,
    display_name: &str,
    revoke: &[KeyId],
    events: Vec<EncodedEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = user_by_id(conn, u.id)?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    if let Some(s) = &stored
        && s.approver_id != u.approver_id
    {
        // A renamed person: the old approver keeps its history and loses everything the
        // directory gave it (groups, keys, sessions); the new one takes over the membership.
        execute(
            conn,
            "UPDATE approvers SET groups_json = '[]' WHERE id = ?",
            [&s.approver_id],
        )?;
        deprovision(conn, &s.approver_id, revoke, now)?;
    }
    if let Some(other) = user_of(conn, &u.approver_id)?
        && other.id != u.id
    {
        return Err(StoreError::Conflict(countersign_store::Conflict::Exists));
    }
    execute(
        conn,
        "INSERT INTO approvers (id, display_name, groups_json) VALUES (?, ?, '[]')
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
        params![u.approver_id, display_name],
    )?;
    execute(
        conn,
        "INSERT INTO directory_users (id, approver_id, external_id, active, attributes, version, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET approver_id = excluded.approver_id, external_id = excluded.external_id,
             active = excluded.active, attributes = excluded.attributes, version = excluded.version,
             updated_at = excluded.updated_at",
        params![
            u.id.to_string(),
            u.approver_id,
            u.external_id,
            i64::from(u.active),
            u.attributes,
            stored_version(u.version),
            u.created_at.as_millis(),
            u.updated_at.as_millis()
        ],
    )?;
    if !u.active {
        deprovision(conn, &u.approver_id, revoke, now)?;
    }
    recompute_groups(conn, u.id)?;
    audit::append(conn, events)
}

fn delete_user(
    conn: &Connection,
    id: Uuid,
    expected: Expected,
    revoke: &[KeyId],
    events: Vec<EncodedEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = user_by_id(conn, id)?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let Some(stored) = stored else {
        return Err(StoreError::NotFound("directory user"));
    };
    deprovision(conn, &stored.approver_id, revoke, now)?;
    execute(
        conn,
        "DELETE FROM directory_members WHERE user_id = ?",
        [id.to_string()],
    )?;
    execute(
        conn,
        "DELETE FROM directory_users WHERE id = ?",
        [id.to_string()],
    )?;
    execute(
        conn,
        "UPDATE approvers SET groups_json = '[]' WHERE id = ?",
        [&stored.approver_id],
    )?;
    audit::append(conn, events)
}

fn put_group(
    conn: &Connection,
    g: &DirectoryGroup,
    expected: Expected,
    events: Vec<EncodedEvent>,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = group_by_id(conn, g.id)?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let name_key = g.display_name.to_lowercase();
    let clash = select_one(
        conn,
        "SELECT id FROM directory_groups WHERE name_key = ? AND id <> ?",
        params![name_key, g.id.to_string()],
        |row| col::<String>(row, "id"),
    )?;
    if clash.is_some() {
        return Err(StoreError::Conflict(countersign_store::Conflict::Exists));
    }
    for member in &g.members {
        if user_by_id(conn, *member)?.is_none() {
            return Err(StoreError::NotFound("group member"));
        }
    }
    execute(
        conn,
        "INSERT INTO directory_groups (id, name_key, display_name, external_id, maps_to, version, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET name_key = excluded.name_key, display_name = excluded.display_name,
             external_id = excluded.external_id, maps_to = excluded.maps_to, version = excluded.version,
             updated_at = excluded.updated_at",
        params![
            g.id.to_string(),
            name_key,
            g.display_name,
            g.external_id,
            g.maps_to,
            stored_version(g.version),
            g.created_at.as_millis(),
            g.updated_at.as_millis()
        ],
    )?;
    let before = stored.map(|s| s.members).unwrap_or_default();
    execute(
        conn,
        "DELETE FROM directory_members WHERE group_id = ?",
        [g.id.to_string()],
    )?;
    for member in &g.members {
        execute(
            conn,
            "INSERT INTO directory_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            params![g.id.to_string(), member.to_string()],
        )?;
    }
    // The mapping may have changed too: everyone in the group before or after is recomputed.
    for member in before.iter().chain(&g.members) {
        recompute_groups(conn, *member)?;
    }
    audit::append(conn, events)
}

fn delete_group(
    conn: &Connection,
    id: Uuid,
    expected: Expected,
    events: Vec<EncodedEvent>,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = group_by_id(conn, id)?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let members = stored.map(|s| s.members).unwrap_or_default();
    execute(
        conn,
        "DELETE FROM directory_members WHERE group_id = ?",
        [id.to_string()],
    )?;
    execute(
        conn,
        "DELETE FROM directory_groups WHERE id = ?",
        [id.to_string()],
    )?;
    for member in &members {
        recompute_groups(conn, *member)?;
    }
    audit::append(conn, events)
}

/// Whether the directory deactivated this approver (`None` when the directory does not hold
/// them), for the enrolment rule.
pub(crate) fn directory_active(conn: &Connection, approver_id: &str) -> StoreResult<Option<bool>> {
    Ok(user_of(conn, approver_id)?.map(|u| u.active))
}

#[async_trait]
impl Directory for SqliteStore {
    async fn directory_user(&self, id: Uuid) -> StoreResult<Option<DirectoryUser>> {
        self.read(move |c| user_by_id(c, id)).await
    }

    async fn directory_user_of(&self, approver_id: &str) -> StoreResult<Option<DirectoryUser>> {
        let approver_id = approver_id.to_owned();
        self.read(move |c| user_of(c, &approver_id)).await
    }

    async fn directory_users(&self) -> StoreResult<Vec<DirectoryUser>> {
        self.read(|c| {
            select(
                c,
                "SELECT * FROM directory_users ORDER BY created_at, id",
                [],
                user,
            )
        })
        .await
    }

    async fn directory_group(&self, id: Uuid) -> StoreResult<Option<DirectoryGroup>> {
        self.read(move |c| group_by_id(c, id)).await
    }

    async fn directory_groups(&self) -> StoreResult<Vec<DirectoryGroup>> {
        self.read(|c| {
            select(
                c,
                "SELECT * FROM directory_groups ORDER BY created_at, id",
                [],
                |row| group(c, row),
            )
        })
        .await
    }

    async fn put_directory_user(
        &self,
        user: &DirectoryUser,
        expected: Expected,
        display_name: &str,
        revoke: &[KeyId],
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (user, name, revoke) = (user.clone(), display_name.to_owned(), revoke.to_vec());
        let events = audit::encode(events, now)?;
        self.write(move |c| put_user(c, &user, expected, &name, &revoke, events, now))
            .await
    }

    async fn delete_directory_user(
        &self,
        id: Uuid,
        expected: Expected,
        revoke: &[KeyId],
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let revoke = revoke.to_vec();
        let events = audit::encode(events, now)?;
        self.write(move |c| delete_user(c, id, expected, &revoke, events, now))
            .await
    }

    async fn put_directory_group(
        &self,
        group: &DirectoryGroup,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let group = group.clone();
        let events = audit::encode(events, now)?;
        self.write(move |c| put_group(c, &group, expected, events))
            .await
    }

    async fn delete_directory_group(
        &self,
        id: Uuid,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let events = audit::encode(events, now)?;
        self.write(move |c| delete_group(c, id, expected, events))
            .await
    }
}
