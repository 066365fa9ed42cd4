//! Enrolling a key with a service: the one-time code, and a proof of possession signed by the
//! key itself (with its TPM attestation, when it has one).

use countersign_client::Client;
use countersign_client::approver::{ApproverError, EndorsementKey, EnrolmentKey, enroll};
use countersign_core::api::Enrolled;
use countersign_keys::Signer;
use countersign_keys::credential::Credential;

/// What the client's enrolment needs from `signer`, shown to admins under `label`.
pub fn enrolment_key(
    signer: &dyn Signer,
    label: String,
) -> Result<EnrolmentKey<'_>, ApproverError> {
    let endorsement = signer
        .endorsement()
        .map_err(|e| ApproverError::Sign(format!("reading the TPM's endorsement: {e}")))?
        .map(|e| EndorsementKey {
            ek_certificate: e.ek_certificate,
            attestation_key_public: e.attestation_key_public,
            activate: Box::new(move |blob: &[u8], secret: &[u8]| {
                let credential = Credential {
                    id_object: blob.to_vec(),
                    encrypted_secret: secret.to_vec(),
                };
                signer
                    .activate_credential(&credential)
                    .map(|s| s.to_vec())
                    .map_err(|e| e.to_string())
            }),
        });
    Ok(EnrolmentKey {
        kind: signer.describe().kind,
        label,
        public_key: signer.public_key(),
        sign: Box::new(move |m: &[u8]| signer.sign(m).map_err(|e| e.to_string())),
        attest: Box::new(move |nonce: &[u8]| signer.attest(nonce).map_err(|e| e.to_string())),
        endorsement,
    })
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
        enrolment_key(signer, label)?,
    )
    .await
}
