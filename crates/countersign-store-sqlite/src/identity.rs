//! Agents' tokens, approvers, their keys, enrolment codes, challenges and sessions.

use async_trait::async_trait;
use countersign_core::{Digest, EncodedEvent, KeyId, PublicKey, Timestamp};
use countersign_store::{
    ApiToken, Approver, ApproverKey, Conflict, EnrolmentCode, Identity, NewEvent, Session,
    StoreError, StoreResult, rules,
};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::SqliteStore;
use crate::audit;
use crate::codec::{
    col, corrupt, digest, enum_text, json, key_id, key_kind, opt_ts, token_role, ts, uuid,
};
use crate::query::{execute, select, select_one};

pub(crate) fn create_api_token(
    conn: &Connection,
    token: &ApiToken,
    event: EncodedEvent,
) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO api_tokens (token_id, subject, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        params![
            token.token_id.to_string(),
            token.subject,
            token.role.as_str(),
            token.token_hash.to_hex(),
            token.created_at.as_millis()
        ],
    )?;
    audit::append(conn, vec![event])?;
    Ok(())
}

fn api_token(row: &Row<'_>) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        token_id: uuid(&col::<String>(row, "token_id")?)?,
        subject: col(row, "subject")?,
        role: token_role(&col::<String>(row, "role")?)?,
        token_hash: digest(&col::<String>(row, "token_hash")?)?,
        created_at: ts(col(row, "created_at")?)?,
        revoked_at: opt_ts(col(row, "revoked_at")?)?,
    })
}

pub(crate) fn api_token_by_hash(conn: &Connection, hash: &Digest) -> StoreResult<Option<ApiToken>> {
    select_one(
        conn,
        "SELECT * FROM api_tokens WHERE token_hash = ?",
        [hash.to_hex()],
        api_token,
    )
}

pub(crate) fn api_tokens(conn: &Connection) -> StoreResult<Vec<ApiToken>> {
    select(
        conn,
        "SELECT * FROM api_tokens ORDER BY created_at",
        [],
        api_token,
    )
}

pub(crate) fn revoke_api_token(
    conn: &Connection,
    token_id: Uuid,
    event: EncodedEvent,
    now: Timestamp,
) -> StoreResult<()> {
    let done = execute(
        conn,
        "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
        params![now.as_millis(), token_id.to_string()],
    )?;
    if done == 0 {
        return Err(StoreError::NotFound("active API token"));
    }
    audit::append(conn, vec![event])?;
    Ok(())
}

pub(crate) fn put_approver(
    conn: &Connection,
    approver: &Approver,
    event: EncodedEvent,
) -> StoreResult<()> {
    let groups =
        serde_json::to_string(&approver.groups).map_err(|e| StoreError::Backend(e.to_string()))?;
    execute(
        conn,
        "INSERT INTO approvers (id, display_name, groups_json) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                                        groups_json = excluded.groups_json",
        params![approver.id, approver.display_name, groups],
    )?;
    audit::append(conn, vec![event])?;
    Ok(())
}

fn approver(row: &Row<'_>) -> StoreResult<Approver> {
    Ok(Approver {
        id: col(row, "id")?,
        display_name: col(row, "display_name")?,
        groups: json("approver groups", &col::<String>(row, "groups_json")?)?,
    })
}

pub(crate) fn approver_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Approver>> {
    select_one(conn, "SELECT * FROM approvers WHERE id = ?", [id], approver)
}

pub(crate) fn approvers(conn: &Connection) -> StoreResult<Vec<Approver>> {
    select(conn, "SELECT * FROM approvers ORDER BY id", [], approver)
}

pub(crate) fn create_enrolment_code(
    conn: &Connection,
    code: &EnrolmentCode,
    event: EncodedEvent,
) -> StoreResult<()> {
    if approver_by_id(conn, &code.approver_id)?.is_none() {
        return Err(StoreError::NotFound("approver"));
    }
    execute(
        conn,
        "INSERT INTO enrolment_codes (code_hash, approver_id, expires_at) VALUES (?, ?, ?)",
        params![
            code.code_hash.to_hex(),
            code.approver_id,
            code.expires_at.as_millis()
        ],
    )?;
    audit::append(conn, vec![event])?;
    Ok(())
}

pub(crate) fn enrol_key(
    conn: &Connection,
    code_hash: &Digest,
    key: &ApproverKey,
    event: EncodedEvent,
) -> StoreResult<()> {
    let now = key.enrolled_at;
    let code = select_one(
        conn,
        "SELECT approver_id, expires_at, used_at FROM enrolment_codes WHERE code_hash = ?",
        [code_hash.to_hex()],
        |row| {
            Ok(rules::StoredCode {
                approver_id: col(row, "approver_id")?,
                expires_at: ts(col(row, "expires_at")?)?,
                used: col::<Option<i64>>(row, "used_at")?.is_some(),
            })
        },
    )?;
    let key_exists = select_one(
        conn,
        "SELECT 1 FROM approver_keys WHERE key_id = ?",
        [key.key_id.to_string()],
        |_| Ok(()),
    )?
    .is_some();
    rules::check_enrolment(code.as_ref(), &key.approver_id, key_exists, now)
        .map_err(StoreError::Conflict)?;
    rules::check_may_enrol(crate::directory::directory_active(conn, &key.approver_id)?)
        .map_err(StoreError::Conflict)?;
    execute(
        conn,
        "UPDATE enrolment_codes SET used_at = ? WHERE code_hash = ?",
        params![now.as_millis(), code_hash.to_hex()],
    )?;
    let public_key = serde_json::to_value(&key.public_key)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned));
    execute(
        conn,
        "INSERT INTO approver_keys (key_id, approver_id, kind, public_key, label, attestation, attested_by, enrolled_via, signed_in_at, enrolled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            key.key_id.to_string(),
            key.approver_id,
            enum_text(&key.kind)?,
            public_key,
            key.label,
            key.attestation,
            key.attested_by,
            key.enrolled_via,
            key.signed_in_at.map(Timestamp::as_millis),
            now.as_millis()
        ],
    )?;
    audit::append(conn, vec![event])?;
    Ok(())
}

fn approver_key(row: &Row<'_>) -> StoreResult<ApproverKey> {
    let public_key: PublicKey =
        serde_json::from_value(serde_json::Value::String(col(row, "public_key")?))
            .map_err(|e| corrupt("public key", e))?;
    let key = ApproverKey {
        key_id: key_id(&col::<String>(row, "key_id")?)?,
        approver_id: col(row, "approver_id")?,
        kind: key_kind(&col::<String>(row, "kind")?)?,
        public_key,
        label: col(row, "label")?,
        attestation: col(row, "attestation")?,
        attested_by: col(row, "attested_by")?,
        enrolled_via: col(row, "enrolled_via")?,
        signed_in_at: opt_ts(col(row, "signed_in_at")?)?,
        enrolled_at: ts(col(row, "enrolled_at")?)?,
        revoked_at: opt_ts(col(row, "revoked_at")?)?,
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

pub(crate) fn key(conn: &Connection, id: &KeyId) -> StoreResult<Option<ApproverKey>> {
    select_one(
        conn,
        "SELECT * FROM approver_keys WHERE key_id = ?",
        [id.to_string()],
        approver_key,
    )
}

pub(crate) fn keys(conn: &Connection, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>> {
    select(
        conn,
        "SELECT * FROM approver_keys WHERE ?1 IS NULL OR approver_id = ?1 ORDER BY enrolled_at",
        [approver_id],
        approver_key,
    )
}

pub(crate) fn revoke_key(
    conn: &Connection,
    id: &KeyId,
    event: EncodedEvent,
    now: Timestamp,
) -> StoreResult<()> {
    let done = execute(
        conn,
        "UPDATE approver_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        params![now.as_millis(), id.to_string()],
    )?;
    if done == 0 {
        return Err(StoreError::NotFound("active key"));
    }
    // Sessions opened with the key end with it.
    execute(
        conn,
        "DELETE FROM sessions WHERE key_id = ?",
        [id.to_string()],
    )?;
    audit::append(conn, vec![event])?;
    Ok(())
}

pub(crate) fn record_sign_in(
    conn: &Connection,
    id: &KeyId,
    approver_id: &str,
    at: Timestamp,
    event: EncodedEvent,
) -> StoreResult<()> {
    let done = execute(
        conn,
        "UPDATE approver_keys SET signed_in_at = MAX(COALESCE(signed_in_at, 0), ?)
         WHERE key_id = ? AND approver_id = ? AND revoked_at IS NULL",
        params![at.as_millis(), id.to_string(), approver_id],
    )?;
    if done == 0 {
        return Err(StoreError::NotFound("active key"));
    }
    audit::append(conn, vec![event])?;
    Ok(())
}

pub(crate) fn use_challenge(
    conn: &Connection,
    challenge: &Digest,
    expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    // A used challenge is kept only while it could still be presented.
    execute(
        conn,
        "DELETE FROM challenges WHERE expires_at <= ?",
        [now.as_millis()],
    )?;
    let used_before = select_one(
        conn,
        "SELECT 1 FROM challenges WHERE challenge = ?",
        [challenge.to_hex()],
        |_| Ok(()),
    )?
    .is_some();
    rules::check_challenge(expires_at, used_before, now).map_err(StoreError::Conflict)?;
    let inserted = execute(
        conn,
        "INSERT INTO challenges (challenge, expires_at, used) VALUES (?, ?, 1)
         ON CONFLICT (challenge) DO NOTHING",
        params![challenge.to_hex(), expires_at.as_millis()],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(Conflict::ChallengeInvalid));
    }
    Ok(())
}

pub(crate) fn create_session(conn: &Connection, s: &Session) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO sessions (token_hash, approver_id, key_id, expires_at) VALUES (?, ?, ?, ?)",
        params![
            s.token_hash.to_hex(),
            s.approver_id,
            s.key_id.to_string(),
            s.expires_at.as_millis()
        ],
    )?;
    Ok(())
}

pub(crate) fn session(
    conn: &Connection,
    token_hash: &Digest,
    now: Timestamp,
) -> StoreResult<Option<Session>> {
    select_one(
        conn,
        "SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?",
        params![token_hash.to_hex(), now.as_millis()],
        |row| {
            Ok(Session {
                token_hash: digest(&col::<String>(row, "token_hash")?)?,
                approver_id: col(row, "approver_id")?,
                key_id: key_id(&col::<String>(row, "key_id")?)?,
                expires_at: ts(col(row, "expires_at")?)?,
            })
        },
    )
}

#[async_trait]
impl Identity for SqliteStore {
    async fn create_api_token(&self, token: &ApiToken, event: NewEvent) -> StoreResult<()> {
        let token = token.clone();
        let event = crate::audit::encode_one(event, token.created_at)?;
        self.write(move |c| create_api_token(c, &token, event))
            .await
    }

    async fn api_token(&self, token_hash: &Digest) -> StoreResult<Option<ApiToken>> {
        let hash = *token_hash;
        self.read(move |c| api_token_by_hash(c, &hash)).await
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.read(api_tokens).await
    }

    async fn revoke_api_token(
        &self,
        token_id: Uuid,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| revoke_api_token(c, token_id, event, now))
            .await
    }

    async fn put_approver(
        &self,
        approver: &Approver,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let approver = approver.clone();
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| put_approver(c, &approver, event)).await
    }

    async fn approver(&self, id: &str) -> StoreResult<Option<Approver>> {
        let id = id.to_owned();
        self.read(move |c| approver_by_id(c, &id)).await
    }

    async fn approvers(&self) -> StoreResult<Vec<Approver>> {
        self.read(approvers).await
    }

    async fn create_enrolment_code(
        &self,
        code: &EnrolmentCode,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let code = code.clone();
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| create_enrolment_code(c, &code, event))
            .await
    }

    async fn enrol_key(
        &self,
        code_hash: &Digest,
        key: &ApproverKey,
        event: NewEvent,
    ) -> StoreResult<()> {
        let (code_hash, key) = (*code_hash, key.clone());
        let event = crate::audit::encode_one(event, key.enrolled_at)?;
        self.write(move |c| enrol_key(c, &code_hash, &key, event))
            .await
    }

    async fn key(&self, key_id: &KeyId) -> StoreResult<Option<ApproverKey>> {
        let key_id = *key_id;
        self.read(move |c| key(c, &key_id)).await
    }

    async fn keys(&self, approver_id: Option<&str>) -> StoreResult<Vec<ApproverKey>> {
        let approver_id = approver_id.map(str::to_owned);
        self.read(move |c| keys(c, approver_id.as_deref())).await
    }

    async fn record_sign_in(
        &self,
        key_id: &KeyId,
        approver_id: &str,
        signed_in_at: Timestamp,
        event: NewEvent,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (key_id, approver_id) = (*key_id, approver_id.to_owned());
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| record_sign_in(c, &key_id, &approver_id, signed_in_at, event))
            .await
    }

    async fn revoke_key(&self, key_id: &KeyId, event: NewEvent, now: Timestamp) -> StoreResult<()> {
        let key_id = *key_id;
        let event = crate::audit::encode_one(event, now)?;
        self.write(move |c| revoke_key(c, &key_id, event, now))
            .await
    }

    async fn use_challenge(
        &self,
        challenge: &Digest,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let challenge = *challenge;
        self.write(move |c| use_challenge(c, &challenge, expires_at, now))
            .await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |c| create_session(c, &session)).await
    }

    async fn session(&self, token_hash: &Digest, now: Timestamp) -> StoreResult<Option<Session>> {
        let hash = *token_hash;
        self.read(move |c| session(c, &hash, now)).await
    }
}
