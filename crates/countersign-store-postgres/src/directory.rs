//! People and groups provisioned by the organisation's directory (SCIM), and what they do to
//! approvers: groups recomputed, keys revoked, sessions ended, in the transaction that records
//! the change.

use async_trait::async_trait;
use countersign_core::{AuditEvent, KeyId, Timestamp};
use countersign_store::{
    Conflict, Directory, DirectoryGroup, DirectoryUser, Expected, NewEvent, StoreError,
    StoreResult, rules,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::codec::{backend, to_json, ts, uuid};
use crate::{PgStore, commit};

fn version(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("directory version {v}")))
}

fn stored_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn user(row: &PgRow) -> StoreResult<DirectoryUser> {
    Ok(DirectoryUser {
        id: uuid(row.get("id"))?,
        approver_id: row.get("approver_id"),
        external_id: row.get("external_id"),
        active: row.get::<i64, _>("active") != 0,
        attributes: row.get("attributes"),
        version: version(row.get("version"))?,
        created_at: ts(row.get("created_at"))?,
        updated_at: ts(row.get("updated_at"))?,
    })
}

async fn user_by_id(conn: &mut PgConnection, id: Uuid) -> StoreResult<Option<DirectoryUser>> {
    sqlx::query("SELECT * FROM directory_users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user)
        .transpose()
}

async fn user_of(conn: &mut PgConnection, approver_id: &str) -> StoreResult<Option<DirectoryUser>> {
    sqlx::query("SELECT * FROM directory_users WHERE approver_id = $1")
        .bind(approver_id)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user)
        .transpose()
}

async fn members(conn: &mut PgConnection, group_id: &str) -> StoreResult<Vec<Uuid>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT m.user_id FROM directory_members m JOIN directory_users u ON u.id = m.user_id
         WHERE m.group_id = $1 ORDER BY u.created_at, u.id",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    ids.iter().map(|id| uuid(id)).collect()
}

async fn group(conn: &mut PgConnection, row: &PgRow) -> StoreResult<DirectoryGroup> {
    let id: String = row.get("id");
    Ok(DirectoryGroup {
        id: uuid(&id)?,
        display_name: row.get("display_name"),
        external_id: row.get("external_id"),
        maps_to: row.get("maps_to"),
        members: members(conn, &id).await?,
        version: version(row.get("version"))?,
        created_at: ts(row.get("created_at"))?,
        updated_at: ts(row.get("updated_at"))?,
    })
}

async fn group_by_id(conn: &mut PgConnection, id: Uuid) -> StoreResult<Option<DirectoryGroup>> {
    let row = sqlx::query("SELECT * FROM directory_groups WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    match row {
        Some(row) => Ok(Some(group(conn, &row).await?)),
        None => Ok(None),
    }
}

async fn set_groups(
    conn: &mut PgConnection,
    approver_id: &str,
    groups: &[String],
) -> StoreResult<()> {
    sqlx::query("UPDATE approvers SET groups_json = $1 WHERE id = $2")
        .bind(to_json(&groups)?)
        .bind(approver_id)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Sets the approver's groups from the directory: the mapped groups the user is in.
async fn recompute_groups(conn: &mut PgConnection, user_id: Uuid) -> StoreResult<()> {
    let Some(u) = user_by_id(&mut *conn, user_id).await? else {
        return Ok(());
    };
    let mapped: Vec<String> = sqlx::query_scalar(
        "SELECT g.maps_to FROM directory_groups g JOIN directory_members m ON m.group_id = g.id
         WHERE m.user_id = $1 AND g.maps_to IS NOT NULL",
    )
    .bind(user_id.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    set_groups(
        conn,
        &u.approver_id,
        &rules::directory_groups(u.active, mapped),
    )
    .await
}

/// Revokes `keys` of `approver_id` and ends their sessions; then none may be left active.
async fn deprovision(
    conn: &mut PgConnection,
    approver_id: &str,
    keys: &[KeyId],
    now: Timestamp,
) -> StoreResult<()> {
    for key in keys {
        sqlx::query(
            "UPDATE approver_keys SET revoked_at = $1 WHERE key_id = $2 AND approver_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(key.to_string())
        .bind(approver_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    sqlx::query("DELETE FROM sessions WHERE approver_id = $1")
        .bind(approver_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approver_keys WHERE approver_id = $1 AND revoked_at IS NULL",
    )
    .bind(approver_id)
    .fetch_one(conn)
    .await
    .map_err(backend)?;
    rules::check_deprovisioned(usize::try_from(left).unwrap_or(usize::MAX))
}

async fn put_user(
    conn: &mut PgConnection,
    u: &DirectoryUser,
    expected: Expected,
    display_name: &str,
    revoke: &[KeyId],
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = user_by_id(&mut *conn, u.id).await?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    if let Some(s) = &stored
        && s.approver_id != u.approver_id
    {
        // A renamed person: the old approver keeps its history and loses everything the
        // directory gave it (groups, keys, sessions); the new one takes over the membership.
        set_groups(&mut *conn, &s.approver_id, &[]).await?;
        deprovision(&mut *conn, &s.approver_id, revoke, now).await?;
    }
    if let Some(other) = user_of(&mut *conn, &u.approver_id).await?
        && other.id != u.id
    {
        return Err(StoreError::Conflict(Conflict::Exists));
    }
    sqlx::query(
        "INSERT INTO approvers (id, display_name, groups_json) VALUES ($1, $2, '[]')
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
    )
    .bind(&u.approver_id)
    .bind(display_name)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query(
        "INSERT INTO directory_users (id, approver_id, external_id, active, attributes, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET approver_id = excluded.approver_id, external_id = excluded.external_id,
             active = excluded.active, attributes = excluded.attributes, version = excluded.version,
             updated_at = excluded.updated_at",
    )
    .bind(u.id.to_string())
    .bind(&u.approver_id)
    .bind(&u.external_id)
    .bind(i64::from(u.active))
    .bind(&u.attributes)
    .bind(stored_version(u.version))
    .bind(u.created_at.as_millis())
    .bind(u.updated_at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if !u.active {
        deprovision(&mut *conn, &u.approver_id, revoke, now).await?;
    }
    recompute_groups(&mut *conn, u.id).await?;
    audit::append(conn, events, now).await
}

async fn delete_user(
    conn: &mut PgConnection,
    id: Uuid,
    expected: Expected,
    revoke: &[KeyId],
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = user_by_id(&mut *conn, id).await?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let Some(stored) = stored else {
        return Err(StoreError::NotFound("directory user"));
    };
    deprovision(&mut *conn, &stored.approver_id, revoke, now).await?;
    for sql in [
        "DELETE FROM directory_members WHERE user_id = $1",
        "DELETE FROM directory_users WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    set_groups(&mut *conn, &stored.approver_id, &[]).await?;
    audit::append(conn, events, now).await
}

async fn put_group(
    conn: &mut PgConnection,
    g: &DirectoryGroup,
    expected: Expected,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = group_by_id(&mut *conn, g.id).await?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let name_key = g.display_name.to_lowercase();
    let clash: Option<String> =
        sqlx::query_scalar("SELECT id FROM directory_groups WHERE name_key = $1 AND id <> $2")
            .bind(&name_key)
            .bind(g.id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    if clash.is_some() {
        return Err(StoreError::Conflict(Conflict::Exists));
    }
    for member in &g.members {
        if user_by_id(&mut *conn, *member).await?.is_none() {
            return Err(StoreError::NotFound("group member"));
        }
    }
    sqlx::query(
        "INSERT INTO directory_groups (id, name_key, display_name, external_id, maps_to, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET name_key = excluded.name_key, display_name = excluded.display_name,
             external_id = excluded.external_id, maps_to = excluded.maps_to, version = excluded.version,
             updated_at = excluded.updated_at",
    )
    .bind(g.id.to_string())
    .bind(&name_key)
    .bind(&g.display_name)
    .bind(&g.external_id)
    .bind(&g.maps_to)
    .bind(stored_version(g.version))
    .bind(g.created_at.as_millis())
    .bind(g.updated_at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let before = stored.map(|s| s.members).unwrap_or_default();
    sqlx::query("DELETE FROM directory_members WHERE group_id = $1")
        .bind(g.id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    for member in &g.members {
        sqlx::query(
            "INSERT INTO directory_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(g.id.to_string())
        .bind(member.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    // The mapping may have changed too: everyone in the group before or after is recomputed.
    for member in before.iter().chain(&g.members) {
        recompute_groups(&mut *conn, *member).await?;
    }
    audit::append(conn, events, now).await
}

async fn delete_group(
    conn: &mut PgConnection,
    id: Uuid,
    expected: Expected,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEvent>> {
    let stored = group_by_id(&mut *conn, id).await?;
    rules::check_version(stored.as_ref().map(|s| s.version), expected)?;
    let members = stored.map(|s| s.members).unwrap_or_default();
    for sql in [
        "DELETE FROM directory_members WHERE group_id = $1",
        "DELETE FROM directory_groups WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    for member in &members {
        recompute_groups(&mut *conn, *member).await?;
    }
    audit::append(conn, events, now).await
}

/// Whether the directory deactivated this approver (`None` when the directory does not hold
/// them), for the enrolment rule.
pub(crate) async fn directory_active(
    conn: &mut PgConnection,
    approver_id: &str,
) -> StoreResult<Option<bool>> {
    Ok(user_of(conn, approver_id).await?.map(|u| u.active))
}

#[async_trait]
impl Directory for PgStore {
    async fn directory_user(&self, id: Uuid) -> StoreResult<Option<DirectoryUser>> {
        user_by_id(&mut *self.conn().await?, id).await
    }

    async fn directory_user_of(&self, approver_id: &str) -> StoreResult<Option<DirectoryUser>> {
        user_of(&mut *self.conn().await?, approver_id).await
    }

    async fn directory_users(&self) -> StoreResult<Vec<DirectoryUser>> {
        sqlx::query("SELECT * FROM directory_users ORDER BY created_at, id")
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(backend)?
            .iter()
            .map(user)
            .collect()
    }

    async fn directory_group(&self, id: Uuid) -> StoreResult<Option<DirectoryGroup>> {
        group_by_id(&mut *self.conn().await?, id).await
    }

    async fn directory_groups(&self) -> StoreResult<Vec<DirectoryGroup>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query("SELECT * FROM directory_groups ORDER BY created_at, id")
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            groups.push(group(&mut conn, row).await?);
        }
        Ok(groups)
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
        let mut tx = self.begin().await?;
        let appended = put_user(&mut tx, user, expected, display_name, revoke, events, now).await?;
        commit(tx, appended).await
    }

    async fn delete_directory_user(
        &self,
        id: Uuid,
        expected: Expected,
        revoke: &[KeyId],
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = delete_user(&mut tx, id, expected, revoke, events, now).await?;
        commit(tx, appended).await
    }

    async fn put_directory_group(
        &self,
        group: &DirectoryGroup,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = put_group(&mut tx, group, expected, events, now).await?;
        commit(tx, appended).await
    }

    async fn delete_directory_group(
        &self,
        id: Uuid,
        expected: Expected,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut tx = self.begin().await?;
        let appended = delete_group(&mut tx, id, expected, events, now).await?;
        commit(tx, appended).await
    }
}
