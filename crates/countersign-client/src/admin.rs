//! The administration calls (`/v1/admin/…`), made with an admin token.

use countersign_core::KeyId;
use countersign_core::api::admin::{
    ApproverAdminView, ApproverUpdate, IssuedEnrolmentCode, IssuedToken, KeyRevocation,
    NewAgentToken, NewEnrolmentCode, PolicyChange, PolicyUpdate, PolicyView, TokenView,
};
use reqwest::Method;
use uuid::Uuid;

use crate::{Client, ClientError};

/// `/v1/admin/approvers/{id}` followed by `tail`, the id escaped into one path segment (ids
/// are often email addresses and may hold `/`, `?` or spaces).
fn approver_path(id: &str, tail: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://service.invalid/v1/admin/approvers/")
        .expect("a constant, valid base URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(id).extend(tail);
    }
    url.path().to_owned()
}

impl Client {
    /// Every API token.
    pub async fn admin_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get("/v1/admin/tokens").await
    }

    /// Issues an agent token.
    pub async fn admin_issue_agent_token(
        &self,
        agent_id: &str,
    ) -> Result<IssuedToken, ClientError> {
        let body = NewAgentToken {
            agent_id: agent_id.to_owned(),
        };
        self.post("/v1/admin/agent-tokens", &body).await
    }

    /// Revokes a token.
    pub async fn admin_revoke_token(&self, token_id: Uuid) -> Result<(), ClientError> {
        self.call_empty::<()>(
            Method::DELETE,
            &format!("/v1/admin/tokens/{token_id}"),
            None,
        )
        .await
    }

    /// Every approver with groups and keys.
    pub async fn admin_approvers(&self) -> Result<Vec<ApproverAdminView>, ClientError> {
        self.get("/v1/admin/approvers").await
    }

    /// Creates or updates an approver.
    pub async fn admin_put_approver(
        &self,
        id: &str,
        update: &ApproverUpdate,
    ) -> Result<ApproverAdminView, ClientError> {
        self.call(Method::PUT, &approver_path(id, &[]), Some(update))
            .await
    }

    /// Issues a one-time enrolment code.
    pub async fn admin_enrolment_code(
        &self,
        approver_id: &str,
        ttl_seconds: Option<i64>,
    ) -> Result<IssuedEnrolmentCode, ClientError> {
        self.post(
            &approver_path(approver_id, &["enrolment-codes"]),
            &NewEnrolmentCode { ttl_seconds },
        )
        .await
    }

    /// Revokes an approver's key.
    pub async fn admin_revoke_key(&self, key_id: &KeyId, reason: &str) -> Result<(), ClientError> {
        let body = KeyRevocation {
            reason: reason.to_owned(),
        };
        self.call_empty(
            Method::POST,
            &format!("/v1/admin/keys/{key_id}/revoke"),
            Some(&body),
        )
        .await
    }

    /// The policy in force.
    pub async fn admin_policy(&self) -> Result<PolicyView, ClientError> {
        self.get("/v1/admin/policy").await
    }

    /// Replaces the policy.
    pub async fn admin_set_policy(
        &self,
        update: &PolicyUpdate,
    ) -> Result<PolicyChange, ClientError> {
        self.call(Method::PUT, "/v1/admin/policy", Some(update))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approver_ids_are_escaped_into_one_path_segment() {
        assert_eq!(
            approver_path("alice@example.com", &[]),
            "/v1/admin/approvers/alice@example.com"
        );
        assert_eq!(
            approver_path("a/b c?d", &["enrolment-codes"]),
            "/v1/admin/approvers/a%2Fb%20c%3Fd/enrolment-codes"
        );
    }
}
