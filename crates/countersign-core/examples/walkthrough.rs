//! A narrated run of the protocol core: a request, its digest, two signed approvals, a grant,
//! the audit log and a signed checkpoint, with every check the service and an auditor make.
//! Keys here are throwaway software keys generated for the run.

use countersign_core::checkpoint::{Checkpoint, SignedCheckpoint};
use countersign_core::policy::policy_hash;
use countersign_core::{
    Action, ActionRequest, Actor, AuditEvent, ConsistencyProof, Decision, EventKind, Grant,
    InclusionProof, KeyKind, MerkleTree, Nonce, PolicyEvaluation, PolicyOutcome, PublicKey,
    Signature, SignedDecision, SignedGrant, Timestamp, Verdict,
};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use uuid::Uuid;

fn key(seed: &str) -> (SigningKey, PublicKey) {
    let scalar = countersign_core::Digest::of(seed.as_bytes());
    let key = SigningKey::from_bytes(&scalar.0.into()).expect("valid scalar");
    let public = PublicKey::from_verifying_key(*key.verifying_key());
    (key, public)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Timestamp::parse("2026-11-21T10:00:00.000Z")?;
    let request: ActionRequest = serde_json::from_str(
        r#"{"type": "db.export", "resource": "postgres://prod-eu/customers",
            "environment": "prod", "parameters": {"rows": 120000, "columns": ["id", "email"]},
            "justification": "Quarterly churn analysis (DATA-1422)", "tags": ["pii"]}"#,
    )?;
    request.validate()?;
    let action = Action {
        id: Uuid::from_u128(0x0193_6f4e_7c00_7000_8000_0000_0000_0001),
        requester: "agent:analytics-bot".into(),
        request,
        created_at: now,
        expires_at: now.add_seconds(900),
        policy: PolicyEvaluation {
            outcome: PolicyOutcome::RequireApproval {
                quorum: 2,
                groups: vec!["security".into()],
                ttl_seconds: 900,
                require_hardware_key: false,
                quick_approve: false,
                verification_code: false,
                require_idp_enrolment: false,
                max_sign_in_age_seconds: None,
                require_attested_key: false,
                escalation: Vec::new(),
                remind_before_seconds: Vec::new(),
            },
            reason: "production export of pii needs two security approvers".into(),
            policy_hash: policy_hash(b"demo policy"),
            risk: None,
        },
    };
    let digest = action.digest()?;
    println!(
        "request {} ({} on {})",
        action.id, action.request.action_type, action.request.resource
    );
    println!("  policy: {}", action.policy.reason);
    println!("  digest: {digest}");

    let mut log = MerkleTree::new();
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut append =
        |actor: Actor, event: EventKind, at: Timestamp| -> Result<(), Box<dyn std::error::Error>> {
            let e = AuditEvent {
                seq: events.len() as u64,
                recorded_at: at,
                actor,
                event,
            };
            log.push_leaf_hash(e.leaf_hash()?);
            events.push(e);
            Ok(())
        };
    append(
        Actor::Agent(action.requester.clone()),
        EventKind::RequestCreated {
            action: Box::new(action.clone()),
            digest,
            authenticated_by: None,
        },
        now,
    )?;

    for (i, approver) in ["bob@example.com", "carol@example.com"].iter().enumerate() {
        let (signing, public) = key(approver);
        let decision = Decision {
            request_id: action.id,
            request_digest: digest,
            verdict: Verdict::Approve,
            approver_id: (*approver).into(),
            key_id: public.key_id(),
            decided_at: now.add_seconds(30 * (i as i64 + 1)),
            comment: String::new(),
            nonce: Nonce([i as u8; 16]),
            verification_code: None,
        };
        let signature = Signature::from_p256(signing.sign(&decision.signing_payload()?));
        let signed = SignedDecision {
            decision,
            signature,
        };
        signed.verify(&public)?;
        println!(
            "  {approver} approved with key {} — signature verified",
            public.key_id().short()
        );
        let at = signed.decision.decided_at;
        append(
            Actor::Approver((*approver).into()),
            EventKind::DecisionRecorded {
                decision: signed,
                key_kind: KeyKind::Software,
                attested_by: None,
            },
            at,
        )?;
    }

    let (service_key, service_public) = key("service");
    let grant = Grant {
        grant_id: Uuid::from_u128(2),
        request_id: action.id,
        request_digest: digest,
        not_before: now.add_seconds(60),
        expires_at: now.add_seconds(360),
        single_use: true,
    };
    let signature = Signature::from_p256(service_key.sign(&grant.signing_payload()?));
    let grant = SignedGrant { grant, signature };
    grant.check(&service_public, now.add_seconds(61), &digest)?;
    println!(
        "  quorum reached: grant {} valid until {}",
        grant.grant.grant_id, grant.grant.expires_at
    );
    let refused = grant.check(&service_public, now.add_seconds(400), &digest);
    println!(
        "  the same grant at +400 s: {}",
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let old_size = 3;
    append(
        Actor::System,
        EventKind::GrantIssued { grant },
        now.add_seconds(60),
    )?;

    let checkpoint = Checkpoint {
        origin: "countersign.demo/log".into(),
        tree_size: log.size(),
        root_hash: log.root(),
        timestamp: now.add_seconds(61),
    };
    let signature = Signature::from_p256(service_key.sign(&checkpoint.signing_payload()));
    let signed = SignedCheckpoint::new(
        checkpoint,
        "countersign.demo/log",
        &service_public,
        signature,
    );
    println!(
        "\naudit log: {} events; signed checkpoint:\n{}",
        events.len(),
        signed.to_note()
    );
    signed.verify("countersign.demo/log", &service_public)?;

    let proof = InclusionProof {
        leaf_index: 1,
        tree_size: log.size(),
        hashes: log.inclusion_proof(1, log.size())?,
    };
    proof.verify(&events[1].leaf_hash()?, &log.root())?;
    println!("event 1 (bob's decision) is included in the checkpoint: verified");
    let proof = ConsistencyProof {
        from_size: old_size,
        to_size: log.size(),
        hashes: log.consistency_proof(old_size, log.size())?,
    };
    proof.verify(&log.root_at(old_size)?, &log.root())?;
    println!(
        "log at size {old_size} is a prefix of size {}: verified",
        log.size()
    );
    Ok(())
}
