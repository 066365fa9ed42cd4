//! Agents' tokens, approvers, their keys, enrolment codes, challenges and sessions.

use crate::{PgStore, commit};
use async_trait::async_trait;
use countersign_core::{Digest, KeyId, PublicKey, Timestamp};
use countersign_store::{
    ApiToken, Approver, ApproverKey, Conflict, EnrolmentCode, NewEvent, Session, StoreError,
    StoreResult,
};
use countersign_store::{Identity, rules};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::audit;
use crate::codec::{
    backend, corrupt, digest, enum_text, json, key_id, key_kind, opt_ts, token_role, ts, uuid,
};

pub(crate) async fn create_api_token(
    conn: &mut PgConnection,
    token: &ApiToken,
    event: NewEvent,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_tokens (token_id, subject, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token.token_id.to_string())
    .bind(&token.subject)
    .bind(token.role.as_str())
    .bind(token.token_hash.to_hex())
    .bind(token.created_at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    audit::append(conn, vec![event], token.created_at).await?;
    Ok(())
}

fn api_token(row: &PgRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        token_id: uuid(row.get("token_id"))?,
        subject: row.get("subject"),
        role: token_role(row.get("role"))?,
        token_hash: digest(row.get("token_hash"))?,
        created_at: ts(row.get("created_at"))?,
        revoked_at: opt_ts(row.get("revoked_at"))?,
    })
}

pub(crate) async fn api_token_by_hash(
    conn: &mut PgConnection,
    hash: &Digest,
) -> StoreResult<Option<ApiToken>> {
    sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
        .bind(hash.to_hex())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(api_token)
        .transpose()
}

pub(crate) async fn api_tokens(conn: &mut PgConnection) -> StoreResult<Vec<ApiToken>> {
    sqlx::query("SELECT * FROM api_tokens ORDER BY created_at")
        .fetch_all(conn)
        .await
        .map_err(backend)?
        .iter()
        .map(api_token)
        .collect()
}

pub(crate) async fn revoke_api_token(
    conn: &mut PgConnection,
    token_id: Uuid,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(token_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("active API token"));
    }
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

pub(crate) async fn put_approver(
    conn: &mut PgConnection,
    approver: &Approver,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO approvers (id, display_name, groups_json) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                                        groups_json = excluded.groups_json",
    )
    .bind(&approver.id)
    .bind(&approver.display_name)
    .bind(serde_json::to_string(&approver.groups).map_err(|e| StoreError::Backend(e.to_string()))?)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

fn approver(row: &PgRow) -> StoreResult<Approver> {
    Ok(Approver {
        id: row.get("id"),
        display_name: row.get("display_name"),
        groups: json("approver groups", row.get("groups_json"))?,
    })
}

pub(crate) async fn approver_by_id(
    conn: &mut PgConnection,
    id: &str,
) -> StoreResult<Option<Approver>> {
    sqlx::query("SELECT * FROM approvers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(approver)
        .transpose()
}

pub(crate) async fn approvers(conn: &mut PgConnection) -> StoreResult<Vec<Approver>> {
    sqlx::query("SELECT * FROM approvers ORDER BY id")
        .fetch_all(conn)
        .await
        .map_err(backend)?
        .iter()
        .map(approver)
        .collect()
}

pub(crate) async fn create_enrolment_code(
    conn: &mut PgConnection,
    code: &EnrolmentCode,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<()> {
    if approver_by_id(&mut *conn, &code.approver_id)
        .await?
        .is_none()
    {
        return Err(StoreError::NotFound("approver"));
    }
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, approver_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(code.code_hash.to_hex())
    .bind(&code.approver_id)
    .bind(code.expires_at.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

pub(crate) async fn enrol_key(
    conn: &mut PgConnection,
    code_hash: &Digest,
    key: &ApproverKey,
    event: NewEvent,
) -> StoreResult<()> {
    let now = key.enrolled_at;
    let code = sqlx::query(
        "SELECT approver_id, expires_at, used_at FROM enrolment_codes WHERE code_hash = $1",
    )
    .bind(code_hash.to_hex())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?
    .map(|row| {
        Ok::<_, StoreError>(rules::StoredCode {
            approver_id: row.get("approver_id"),
            expires_at: ts(row.get("expires_at"))?,
            used: row.get::<Option<i64>, _>("used_at").is_some(),
        })
    })
    .transpose()?;
    let key_exists: Option<String> =
        sqlx::query_scalar("SELECT key_id FROM approver_keys WHERE key_id = $1")
            .bind(key.key_id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    rules::check_enrolment(code.as_ref(), &key.approver_id, key_exists.is_some(), now)
        .map_err(StoreError::Conflict)?;
    rules::check_may_enrol(crate::directory::directory_active(&mut *conn, &key.approver_id).await?)
        .map_err(StoreError::Conflict)?;
    sqlx::query("UPDATE enrolment_codes SET used_at = $1 WHERE code_hash = $2")
        .bind(now.as_millis())
        .bind(code_hash.to_hex())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query(
        "INSERT INTO approver_keys (key_id, approver_id, kind, public_key, label, attestation, attested_by, enrolled_via, signed_in_at, enrolled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(key.key_id.to_string())
    .bind(&key.approver_id)
    .bind(enum_text(&key.kind)?)
    .bind(serde_json::to_value(&key.public_key).ok().and_then(|v| v.as_str().map(str::to_owned)))
    .bind(&key.label)
    .bind(&key.attestation)
    .bind(&key.attested_by)
    .bind(&key.enrolled_via)
    .bind(key.signed_in_at.map(Timestamp::as_millis))
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

fn approver_key(row: &PgRow) -> StoreResult<ApproverKey> {
    let public_key: PublicKey =
        serde_json::from_value(serde_json::Value::String(row.get("public_key")))
            .map_err(|e| corrupt("public key", e))?;
    let key = ApproverKey {
        key_id: key_id(row.get("key_id"))?,
        approver_id: row.get("approver_id"),
        kind: key_kind(row.get("kind"))?,
        public_key,
        label: row.get("label"),
        attestation: row.get("attestation"),
        attested_by: row.get("attested_by"),
        enrolled_via: row.get("enrolled_via"),
        signed_in_at: opt_ts(row.get("signed_in_at"))?,
        enrolled_at: ts(row.get("enrolled_at"))?,
        revoked_at: opt_ts(row.get("revoked_at"))?,
    };
    // The id is derived from the key; a row where they disagree was altered.
    if key.public_key.key_id() != key.key_id {
        return Err(corrupt(
            "approver key",
            "key id does not match the public key",
        ));
    }
    Ok(key)
}

pub(crate) async fn key(conn: &mut PgConnection, id: &KeyId) -> StoreResult<Option<ApproverKey>> {
    sqlx::query("SELECT * FROM approver_keys WHERE key_id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(approver_key)
        .transpose()
}

pub(crate) async fn keys(
    conn: &mut PgConnection,
    approver_id: Option<&str>,
) -> StoreResult<Vec<ApproverKey>> {
    sqlx::query(
        "SELECT * FROM approver_keys WHERE $1 IS NULL OR approver_id = $2 ORDER BY enrolled_at",
    )
    .bind(approver_id)
    .bind(approver_id)
    .fetch_all(conn)
    .await
    .map_err(backend)?
    .iter()
    .map(approver_key)
    .collect()
}

pub(crate) async fn revoke_key(
    conn: &mut PgConnection,
    id: &KeyId,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE approver_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("active key"));
    }
    // Sessions opened with the key end with it.
    sqlx::query("DELETE FROM sessions WHERE key_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

pub(crate) async fn record_sign_in(
    conn: &mut PgConnection,
    id: &KeyId,
    approver_id: &str,
    at: Timestamp,
    event: NewEvent,
    now: Timestamp,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE approver_keys SET signed_in_at = GREATEST(COALESCE(signed_in_at, 0), $1)
         WHERE key_id = $2 AND approver_id = $3 AND revoked_at IS NULL",
    )
    .bind(at.as_millis())
    .bind(id.to_string())
    .bind(approver_id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("active key"));
    }
    audit::append(conn, vec![event], now).await?;
    Ok(())
}

pub(crate) async fn use_challenge(
    conn: &mut PgConnection,
    challenge: &Digest,
    expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    // A used challenge is kept only while it could still be presented.
    sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let used_before: Option<String> =
        sqlx::query_scalar("SELECT challenge FROM challenges WHERE challenge = $1")
            .bind(challenge.to_hex())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    rules::check_challenge(expires_at, used_before.is_some(), now).map_err(StoreError::Conflict)?;
    let inserted = sqlx::query(
        "INSERT INTO challenges (challenge, expires_at, used) VALUES ($1, $2, 1)
         ON CONFLICT (challenge) DO NOTHING",
    )
    .bind(challenge.to_hex())
    .bind(expires_at.as_millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(Conflict::ChallengeInvalid));
    }
    Ok(())
}

pub(crate) async fn create_session(conn: &mut PgConnection, s: &Session) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, approver_id, key_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(s.token_hash.to_hex())
    .bind(&s.approver_id)
    .bind(s.key_id.to_string())
    .bind(s.expires_at.as_millis())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn session(
    conn: &mut PgConnection,
    token_hash: &Digest,
    now: Timestamp,
) -> StoreResult<Option<Session>> {
    let row = sqlx::query("SELECT * FROM sessions WHERE token_hash = $1 AND expires_at > $2")
        .bind(token_hash.to_hex())
        .bind(now.as_millis())
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    row.map(|row| {
        Ok(Session {
            token_hash: digest(row.get("token_hash"))?,
            approver_id: row.get("approver_id"),
            key_id: key_id(row.get("key_id"))?,
            expires_at: ts(row.get("expires_at"))?,
        })
    })
    .transpose()
}

#[async_trait]
impl Identity for PgStore {
    async fn create_api_token(&self, token: &ApiToken, event: NewEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        create_api_token(&mut tx, token, event).await?;
        commit(tx, ()).await
    }

    async fn api_token(&self, token_hash: &Digest) -> StoreResult<Option<ApiToken>> {
        api_token_by_hash(&mut *self.conn().await?, token_hash).await
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        api_tokens(&mut *self.conn().await?).await
    }

    async fn revoke_api_token(
        &self,
        token_id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        revoke_api_token(&mut tx, token_id, event, now).await?;
        commit(tx, ()).await
    }

    async fn put_approver(
        &self,
        approver: &Approver,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        put_approver(&mut tx, approver, event, now).await?;
        commit(tx, ()).await
    }

    async fn approver(&self, id: &str) -> StoreResult<Option<Approver>> {
        approver_by_id(&mut *self.conn().await?, id).await
    }

    async fn approvers(&self) -> StoreResult<Vec<Approver>> {
        approvers(&mut *self.conn().await?).await
    }

    async fn create_enrolment_code(
        &self,
        code: &EnrolmentCode,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        create_enrolment_code(&mut tx, code, event, now).await?;
        commit(tx, ()).await
    }

    async fn enrol_key(
        &self,
        code_hash: &Digest,
        key: &ApproverKey,
        event: NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        enrol_key(&mut tx, code_hash, key, event).await?;
        commit(tx, ()).await
    }

    async fn key(&self, key_id: &KeyId) -> StoreResult<Option<ApproverKey>> {
        key(&mut *self.conn().await?, key_id).await
    }

    async fn keys(&self, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>> {
        keys(&mut *self.conn().await?, approver_id).await
    }

    async fn record_sign_in(
        &self,
        key_id: &KeyId,
        approver_id: &str,
        signed_in_at: Timestamp,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        record_sign_in(&mut tx, key_id, approver_id, signed_in_at, event, now).await?;
        commit(tx, ()).await
    }

    async fn revoke_key(&self, key_id: &KeyId, event: NewEvent, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        revoke_key(&mut tx, key_id, event, now).await?;
        commit(tx, ()).await
    }

    async fn use_challenge(
        &self,
        challenge: &Digest,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        use_challenge(&mut tx, challenge, expires_at, now).await?;
        commit(tx, ()).await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        create_session(&mut tx, session).await?;
        commit(tx, ()).await
    }

    async fn session(&self, token_hash: &Digest, now: Timestamp) -> StoreResult<Option<Session>> {
        session(&mut *self.conn().await?, token_hash, now).await
    }
}
