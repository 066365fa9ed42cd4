//! Enrolling a key with a service: the one-time code, and a proof of possession signed by the
//! key itself (with its TPM attestation, when it has one).

use countersign_client::Client;
use countersign_client::approver::{ApproverError, EnrolmentKey, enroll};
use countersign_core::api::Enrolled;
use countersign_keys::Signer;

/// What the client's enrolment needs from `signer`, shown to admins under `label`.
pub fn enrolment_key(signer: &dyn Signer, label: String) -> EnrolmentKey<'_> {
    EnrolmentKey {
        kind: signer.describe().kind,
        label,
        public_key: signer.public_key(),
        sign: Box::new(move |m: &[u8]| signer.sign(m).map_err(|e| e.to_string())),
        attest: Box::new(move |nonce: &[u8]| signer.attest(nonce).map_err(|e| e.to_string())),
    }
}

/// Enrols `signer`'s key for `approver_id` at the service `client` talks to, with the one-time
/// `code` (spaces around it ignored).
pub async fn enrol(
    client: &Client,
    approver_id: &str,
    code: &str,
    signer: &dyn Signer,
    label: String,
) -> Result<Enrolled, ApproverError> {
    enroll(
        client,
        approver_id,
        code.trim().to_owned(),
        enrolment_key(signer, label),
    )
    .await
}
