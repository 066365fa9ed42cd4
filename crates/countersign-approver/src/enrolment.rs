//! Enrolling a key with a service: the one-time code, and a proof of possession signed by the
//! key itself (with its TPM attestation, when it has one).

use countersign_client::Client;
use countersign_client::approver::{ApproverError, EndorsementKey, EnrolmentKey, enroll};
use countersign_core::api::Enrolled;
use countersign_core::{PublicKey, Signature};
use countersign_keys::credential::Credential;
use countersign_keys::{Endorsement, KeyError, KeyInfo, Signer};

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

/// A key whose device attestation comes from outside the key's own backend: a YubiKey's PIV
/// attestation, read with `yubico-piv-tool` (the PIV attest instruction is not a PKCS#11
/// operation). Everything else is the key's.
pub struct WithAttestation<'a> {
    key: &'a dyn Signer,
    document: String,
}

impl<'a> WithAttestation<'a> {
    /// `key`, enrolling with `document` (e.g. a `PivAttestationDocument`, encoded) as its
    /// attestation.
    pub fn new(key: &'a dyn Signer, document: String) -> Self {
        Self { key, document }
    }
}

impl Signer for WithAttestation<'_> {
    fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }
    fn describe(&self) -> KeyInfo {
        self.key.describe()
    }
    fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        self.key.sign(message)
    }
    fn attest(&self, _nonce: &[u8]) -> Result<Option<String>, KeyError> {
        // A vendor attestation is a statement about the key, not bound to an enrolment; the
        // proof of possession is what binds this enrolment.
        Ok(Some(self.document.clone()))
    }
    fn endorsement(&self) -> Result<Option<Endorsement>, KeyError> {
        Ok(None)
    }
}
