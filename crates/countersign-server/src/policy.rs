//! The Rego policy: loaded from a file, evaluated per request, reloaded when the file changes.
//! A policy that fails to load keeps the last good one; a policy that fails to decide denies.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use countersign_core::policy::policy_hash;
use countersign_core::{Digest, PolicyEvaluation, PolicyOutcome, Risk, RiskLevel};
use serde::Deserialize;

/// The rule every policy must define.
pub const DECISION_RULE: &str = "data.countersign.decision";
/// The rule a policy may define to judge a request's risk from its facts.
pub const RISK_RULE: &str = "data.countersign.risk";
/// At most this many reasons for a risk, each at most this long: shown in notifications.
const MAX_RISK_REASONS: usize = 16;
const MAX_RISK_REASON_BYTES: usize = 200;
/// The policy used when none is configured.
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/default.rego");
/// Longest approval window a policy may ask for (one day).
const MAX_TTL_SECONDS: u32 = 86_400;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("policy {path}: {message}")]
pub struct PolicyError {
    /// Where the policy came from.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

struct Loaded {
    engine: regorus::Engine,
    hash: Digest,
    source: String,
    /// Whether the policy defines [`RISK_RULE`].
    judges_risk: bool,
}

/// A policy that compiled and is ready to replace the one in force.
pub struct Candidate {
    engine: regorus::Engine,
    hash: Digest,
    source: String,
    judges_risk: bool,
}

impl Candidate {
    /// Its hash.
    pub fn hash(&self) -> Digest {
        self.hash
    }
}

/// A loaded policy and where it comes from.
pub struct Policy {
    source_path: Option<PathBuf>,
    loaded: Mutex<Loaded>,
    /// Held across an administrator's check–record–install, so two replacements cannot both
    /// pass the check against the same policy.
    changes: tokio::sync::Mutex<()>,
}

/// What the policy returns, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    outcome: String,
    reason: String,
    #[serde(default)]
    quorum: Option<u32>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    ttl_seconds: Option<u32>,
    #[serde(default)]
    require_hardware_key: Option<bool>,
    #[serde(default)]
    quick_approve: Option<bool>,
    #[serde(default)]
    verification_code: Option<bool>,
    #[serde(default)]
    require_idp_enrolment: Option<bool>,
    #[serde(default)]
    max_sign_in_age_seconds: Option<u32>,
    #[serde(default)]
    require_attested_key: Option<bool>,
    #[serde(default)]
    escalation: Option<Vec<countersign_core::EscalationStep>>,
    #[serde(default)]
    remind_before_seconds: Option<Vec<u32>>,
    #[serde(default)]
    review_quorum: Option<u32>,
    #[serde(default)]
    review_groups: Option<Vec<String>>,
}

fn compile(path: &str, source: &str) -> Result<Compiled, PolicyError> {
    let error = |message: String| PolicyError {
        path: path.to_owned(),
        message,
    };
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(path.to_owned(), source.to_owned())
        .map_err(|e| error(e.to_string()))?;
    // A policy without the decision rule would deny everything; refuse it at load instead.
    let probe = serde_json::json!({"action": {"type": "probe.check", "resource": "probe",
        "environment": "probe", "parameters": {}, "context": {}, "tags": [],
        "justification": "load check"}, "requester": "probe"});
    engine
        .set_input_json(&probe.to_string())
        .map_err(|e| error(e.to_string()))?;
    engine
        .eval_rule(DECISION_RULE.to_owned())
        .map_err(|e| error(format!("evaluating {DECISION_RULE}: {e}")))?;
    let judges_risk = engine
        .has_declared_rule_rooted_at(path, "risk")
        .map_err(|e| error(e.to_string()))?;
    if judges_risk {
        engine
            .eval_rule(RISK_RULE.to_owned())
            .map_err(|e| error(format!("evaluating {RISK_RULE}: {e}")))?;
    }
    Ok(Compiled {
        engine,
        judges_risk,
    })
}

/// A policy compiled and checked.
struct Compiled {
    engine: regorus::Engine,
    judges_risk: bool,
}

impl Policy {
    /// The built-in default policy.
    pub fn builtin() -> Result<Self, PolicyError> {
        Self::from_source(None, DEFAULT_POLICY)
    }

    /// Loads the policy file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let source = std::fs::read_to_string(path).map_err(|e| PolicyError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_source(Some(path.to_owned()), &source)
    }

    fn from_source(source_path: Option<PathBuf>, source: &str) -> Result<Self, PolicyError> {
        let name = source_path
            .as_ref()
            .map_or_else(|| "default.rego".to_owned(), |p| p.display().to_string());
        let compiled = compile(&name, source)?;
        Ok(Self {
            source_path,
            loaded: Mutex::new(Loaded {
                engine: compiled.engine,
                hash: policy_hash(source.as_bytes()),
                source: source.to_owned(),
                judges_risk: compiled.judges_risk,
            }),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// Hash of the policy in force.
    pub fn hash(&self) -> Digest {
        self.loaded
            .lock()
            .map(|l| l.hash)
            .unwrap_or(Digest([0; 32]))
    }

    /// Rereads the file; returns `(old, new)` hashes when the policy changed and the new one
    /// loaded. A file that fails to load leaves the policy in force untouched.
    pub fn reload(&self) -> Result<Option<(Digest, Digest)>, PolicyError> {
        let Some(path) = &self.source_path else {
            return Ok(None);
        };
        let source = std::fs::read_to_string(path).map_err(|e| PolicyError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let hash = policy_hash(source.as_bytes());
        if hash == self.hash() {
            return Ok(None);
        }
        let compiled = compile(&path.display().to_string(), &source)?;
        let mut loaded = self.lock()?;
        // An administrator's replacement may have installed this very text meanwhile.
        if loaded.hash == hash {
            return Ok(None);
        }
        let old = loaded.hash;
        *loaded = Loaded {
            engine: compiled.engine,
            hash,
            source,
            judges_risk: compiled.judges_risk,
        };
        Ok(Some((old, hash)))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, PolicyError> {
        self.loaded.lock().map_err(|_| PolicyError {
            path: self.name(),
            message: "policy lock poisoned".into(),
        })
    }

    fn name(&self) -> String {
        self.source_path
            .as_ref()
            .map_or_else(|| "default.rego".to_owned(), |p| p.display().to_string())
    }

    /// Waits for other administrators' replacements to finish; hold it while replacing.
    pub async fn change_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// The file the policy is loaded from; `None` for the built-in one.
    pub fn path(&self) -> Option<&Path> {
        self.source_path.as_deref()
    }

    /// The source and hash in force.
    pub fn current(&self) -> Result<(String, Digest), PolicyError> {
        let loaded = self.lock()?;
        Ok((loaded.source.clone(), loaded.hash))
    }

    /// Compiles `source` as a replacement; a policy that would not load is refused here, before
    /// anything is recorded or written.
    pub fn check(&self, source: &str) -> Result<Candidate, PolicyError> {
        let compiled = compile(&self.name(), source)?;
        Ok(Candidate {
            engine: compiled.engine,
            hash: policy_hash(source.as_bytes()),
            source: source.to_owned(),
            judges_risk: compiled.judges_risk,
        })
    }

    /// Writes `candidate` to a temporary file beside the policy file, so that what can fail
    /// (permissions, a full disk) fails before the change is recorded.
    pub fn stage(&self, candidate: &Candidate) -> Result<PathBuf, PolicyError> {
        let path = self.source_path.as_ref().ok_or_else(|| PolicyError {
            path: self.name(),
            message: "the built-in policy cannot be replaced; start the service with --policy FILE"
                .into(),
        })?;
        let staged = path.with_extension("rego.staged");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&staged)?;
            file.write_all(candidate.source.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| PolicyError {
            path: staged.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(staged)
    }

    /// Puts the staged file in place and `candidate` in force; returns the previous hash.
    pub fn install(&self, staged: &Path, candidate: Candidate) -> Result<Digest, PolicyError> {
        let mut loaded = self.lock()?;
        if let Some(path) = &self.source_path {
            std::fs::rename(staged, path).map_err(|e| PolicyError {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let old = loaded.hash;
        *loaded = Loaded {
            engine: candidate.engine,
            hash: candidate.hash,
            source: candidate.source,
            judges_risk: candidate.judges_risk,
        };
        Ok(old)
    }

    /// Evaluates the policy for one request. Never fails: anything but a well-formed decision
    /// is a deny whose reason says what went wrong.
    pub fn evaluate(&self, input: &serde_json::Value) -> PolicyEvaluation {
        let Ok(mut loaded) = self.loaded.lock() else {
            return deny(Digest([0; 32]), "policy unavailable".into());
        };
        let hash = loaded.hash;
        let result = loaded
            .engine
            .set_input_json(&input.to_string())
            .and_then(|()| loaded.engine.eval_rule(DECISION_RULE.to_owned()));
        let value = match result {
            Ok(value) => value,
            Err(e) => return deny(hash, format!("policy error: {e}")),
        };
        if value == regorus::Value::Undefined {
            return deny(hash, "policy made no decision".into());
        }
        let raw: RawDecision = match value
            .to_json_str()
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(raw) => raw,
            Err(e) => return deny(hash, format!("policy decision is malformed: {e}")),
        };
        let mut outcome = match outcome(&raw) {
            Ok(outcome) => outcome,
            Err(e) => return deny(hash, format!("policy decision is malformed: {e}")),
        };
        let risk = if loaded.judges_risk {
            match loaded
                .engine
                .eval_rule(RISK_RULE.to_owned())
                .map_err(|e| e.to_string())
                .and_then(|value| risk(&value))
            {
                Ok(risk) => risk,
                // A risk the policy meant to judge and could not: refused, not unrated.
                Err(e) => return deny(hash, format!("policy risk is malformed: {e}")),
            }
        } else {
            None
        };
        // Approving from a notification skips the whole request; never for what the policy
        // itself calls high risk, whatever its decision rule said.
        if let (
            PolicyOutcome::RequireApproval { quick_approve, .. },
            Some(Risk {
                level: RiskLevel::High | RiskLevel::Critical,
                ..
            }),
        ) = (&mut outcome, &risk)
        {
            *quick_approve = false;
        }
        PolicyEvaluation {
            outcome,
            reason: raw.reason,
            policy_hash: hash,
            risk,
        }
    }
}

/// The `risk` rule's value: `{"level": "low"|"medium"|"high"|"critical", "reasons": [...]}`;
/// undefined (no rule body matched) is no judgement.
fn risk(value: &regorus::Value) -> Result<Option<Risk>, String> {
    if *value == regorus::Value::Undefined {
        return Ok(None);
    }
    let text = value.to_json_str().map_err(|e| e.to_string())?;
    let risk: Risk = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if risk.reasons.len() > MAX_RISK_REASONS {
        return Err(format!("more than {MAX_RISK_REASONS} reasons"));
    }
    for reason in &risk.reasons {
        countersign_core::validate::text("risk reason", reason, MAX_RISK_REASON_BYTES, false)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(risk))
}

fn deny(policy_hash: Digest, reason: String) -> PolicyEvaluation {
    tracing::warn!(%reason, "policy denied by failing closed");
    PolicyEvaluation {
        outcome: PolicyOutcome::Deny {},
        reason,
        policy_hash,
        risk: None,
    }
}

/// Longest sign-in age a policy may ask for: 30 days.
pub const MAX_SIGN_IN_AGE_SECONDS: u32 = 30 * 86_400;

/// Most escalation steps or reminders a policy may ask for on one request.
pub const MAX_TIMED_STEPS: usize = 8;

/// The escalation steps, checked: each after a whole number of seconds within the request's
/// life, strictly later than the one before, adding groups and/or telling channels.
fn escalation(
    raw: &RawDecision,
    ttl_seconds: u32,
) -> Result<Vec<countersign_core::EscalationStep>, String> {
    let steps = raw.escalation.clone().unwrap_or_default();
    if steps.len() > MAX_TIMED_STEPS {
        return Err(format!("at most {MAX_TIMED_STEPS} escalation steps"));
    }
    let mut previous = 0;
    for (i, step) in steps.iter().enumerate() {
        if step.after_seconds <= previous || step.after_seconds >= ttl_seconds {
            return Err(format!(
                "escalation step {i}: after_seconds {} must be later than the step before and before ttl_seconds {ttl_seconds}",
                step.after_seconds
            ));
        }
        previous = step.after_seconds;
        if step.add_groups.is_empty() && step.notify.is_empty() {
            return Err(format!(
                "escalation step {i} neither adds groups nor notifies anyone"
            ));
        }
        if step.add_groups.len() > 16 || step.notify.len() > 16 {
            return Err(format!(
                "escalation step {i}: at most 16 groups and 16 channels"
            ));
        }
        for name in step.add_groups.iter().chain(&step.notify) {
            countersign_core::identifier::check("escalation", name)
                .map_err(|e| format!("escalation step {i}: {e}"))?;
        }
    }
    if !steps.is_empty()
        && raw.groups.as_ref().is_none_or(Vec::is_empty)
        && steps.iter().any(|s| !s.add_groups.is_empty())
    {
        return Err(
            "escalation adds groups, but any approver may already decide (no groups)".into(),
        );
    }
    Ok(steps)
}

/// The reminder points, checked: within the request's life, at most a few, no repeats.
fn reminders(raw: &RawDecision, ttl_seconds: u32) -> Result<Vec<u32>, String> {
    let mut points = raw.remind_before_seconds.clone().unwrap_or_default();
    if points.len() > MAX_TIMED_STEPS {
        return Err(format!("at most {MAX_TIMED_STEPS} reminders"));
    }
    if let Some(bad) = points.iter().find(|p| **p == 0 || **p >= ttl_seconds) {
        return Err(format!(
            "remind_before_seconds {bad} is outside 1..ttl_seconds ({ttl_seconds})"
        ));
    }
    points.sort_unstable_by(|a, b| b.cmp(a));
    let before = points.len();
    points.dedup();
    if points.len() != before {
        return Err("remind_before_seconds repeats a point".into());
    }
    Ok(points)
}

fn outcome(raw: &RawDecision) -> Result<PolicyOutcome, String> {
    match raw.outcome.as_str() {
        "allow" => Ok(PolicyOutcome::Allow {}),
        "deny" => Ok(PolicyOutcome::Deny {}),
        "require_approval" => {
            let quorum = raw.quorum.ok_or("quorum missing")?;
            if quorum == 0 || quorum > 16 {
                return Err(format!("quorum {quorum} is outside 1..=16"));
            }
            let ttl_seconds = raw.ttl_seconds.ok_or("ttl_seconds missing")?;
            if !(10..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
                return Err(format!(
                    "ttl_seconds {ttl_seconds} is outside 10..={MAX_TTL_SECONDS}"
                ));
            }
            let quick_approve = raw.quick_approve.unwrap_or(false);
            let verification_code = raw.verification_code.unwrap_or(false);
            // A notification's Approve button cannot ask for the code: the two contradict.
            if quick_approve && verification_code {
                return Err("quick_approve and verification_code cannot both be true".into());
            }
            // A minute is the least a person can sign in again in; a month says nothing.
            if let Some(age) = raw.max_sign_in_age_seconds
                && !(60..=MAX_SIGN_IN_AGE_SECONDS).contains(&age)
            {
                return Err(format!(
                    "max_sign_in_age_seconds {age} is outside 60..={MAX_SIGN_IN_AGE_SECONDS}"
                ));
            }
            Ok(PolicyOutcome::RequireApproval {
                quorum,
                groups: raw.groups.clone().unwrap_or_default(),
                ttl_seconds,
                require_hardware_key: raw.require_hardware_key.unwrap_or(false),
                quick_approve,
                verification_code,
                require_idp_enrolment: raw.require_idp_enrolment.unwrap_or(false),
                max_sign_in_age_seconds: raw.max_sign_in_age_seconds,
                require_attested_key: raw.require_attested_key.unwrap_or(false),
                escalation: escalation(raw, ttl_seconds)?,
                remind_before_seconds: reminders(raw, ttl_seconds)?,
            })
        }
        "break_glass" => {
            let review_quorum = raw.review_quorum.ok_or("review_quorum missing")?;
            if review_quorum == 0 || review_quorum > 16 {
                return Err(format!("review_quorum {review_quorum} is outside 1..=16"));
            }
            let review_groups = raw.review_groups.clone().unwrap_or_default();
            for g in &review_groups {
                countersign_core::identifier::check("review_groups", g)
                    .map_err(|e| e.to_string())?;
            }
            Ok(PolicyOutcome::BreakGlass {
                review_quorum,
                review_groups,
            })
        }
        other => Err(format!("unknown outcome {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(action: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"action": action, "requester": "agent:test"})
    }

    fn kind(e: &PolicyEvaluation) -> &'static str {
        match e.outcome {
            PolicyOutcome::Allow {} => "allow",
            PolicyOutcome::Deny {} => "deny",
            PolicyOutcome::RequireApproval { .. } => "require_approval",
            PolicyOutcome::BreakGlass { .. } => "break_glass",
        }
    }

    #[test]
    fn default_policy_decides_the_demo_cases() {
        let p = Policy::builtin().expect("default policy loads");
        let export = p.evaluate(&input(
            serde_json::json!({"type": "db.export", "environment": "prod", "tags": ["pii"]}),
        ));
        assert_eq!(export.outcome.quorum(), Some(2), "{}", export.reason);
        let creds = p.evaluate(&input(serde_json::json!({"type": "db.export", "environment": "prod", "tags": ["credentials"]})));
        assert_eq!(kind(&creds), "deny");
        let read = p.evaluate(&input(
            serde_json::json!({"type": "db.table.read", "environment": "prod", "tags": []}),
        ));
        assert_eq!(kind(&read), "allow");
        let flag = p.evaluate(&input(
            serde_json::json!({"type": "flag.flip", "environment": "staging", "tags": []}),
        ));
        assert!(matches!(
            flag.outcome,
            PolicyOutcome::RequireApproval {
                quick_approve: true,
                verification_code: false,
                ..
            }
        ));
        assert_eq!(read.policy_hash, policy_hash(DEFAULT_POLICY.as_bytes()));

        // Statements the gate brokers: its classification's tags decide, not the agent.
        let sql = |v: serde_json::Value| p.evaluate(&input(v));
        let secrets = sql(
            serde_json::json!({"type": "sql.select", "environment": "dev", "tags": ["credentials"], "parameters": {"sql": "SELECT secret FROM api_keys", "reveal_classified": false}}),
        );
        assert_eq!(kind(&secrets), "deny", "{}", secrets.reason);
        let unmasked = sql(
            serde_json::json!({"type": "sql.select", "environment": "dev", "tags": ["pii"], "parameters": {"sql": "SELECT email FROM customers", "reveal_classified": true}}),
        );
        assert_eq!(unmasked.outcome.quorum(), Some(2), "{}", unmasked.reason);
        let masked = sql(
            serde_json::json!({"type": "sql.select", "environment": "dev", "tags": ["pii"], "parameters": {"sql": "SELECT email FROM customers", "reveal_classified": false}}),
        );
        assert_eq!(kind(&masked), "allow", "{}", masked.reason);
        let prod = sql(
            serde_json::json!({"type": "sql.select", "environment": "prod", "tags": [], "parameters": {"sql": "SELECT 1", "reveal_classified": false}}),
        );
        assert_eq!(prod.outcome.quorum(), Some(1), "{}", prod.reason);
    }

    fn risk_of(e: &PolicyEvaluation) -> (RiskLevel, Vec<String>) {
        let risk = e.risk.clone().expect("the default policy judges risk");
        (risk.level, risk.reasons)
    }

    fn quick(e: &PolicyEvaluation) -> bool {
        matches!(
            e.outcome,
            PolicyOutcome::RequireApproval {
                quick_approve: true,
                ..
            }
        )
    }

    /// Risk comes from what the action does, not from how the agent labels it: a "routine
    /// deploy" whose diff opens SSH to the internet is critical; "prd" is production; an IAM
    /// admin-role change labelled `flag.flip` is critical and never quick-approved.
    #[test]
    fn default_policy_judges_risk_from_the_facts_not_the_agents_words() {
        let p = Policy::builtin().expect("default policy loads");
        let ssh = p.evaluate(&input(serde_json::json!({
            "type": "k8s.deploy", "environment": "staging", "tags": ["routine"],
            "justification": "routine deploy, nothing to see",
            "diff": {"format": "unified", "text": "--- a/sg.tf\n+++ b/sg.tf\n@@ -1 +1 @@\n-  cidr_blocks = [\"10.0.0.0/8\"]\n+  cidr_blocks = [\"0.0.0.0/0\"] # port 22\n"}})));
        let (level, reasons) = risk_of(&ssh);
        assert_eq!(level, RiskLevel::Critical, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("whole internet")),
            "{reasons:?}"
        );
        assert!(ssh.reason.contains("internet"), "{}", ssh.reason);
        // Removing a world-open rule is no risk of that kind.
        let closing = p.evaluate(&input(serde_json::json!({
            "type": "k8s.deploy", "environment": "staging",
            "diff": {"format": "unified", "text": "-  cidr_blocks = [\"0.0.0.0/0\"]\n+  cidr_blocks = [\"10.0.0.0/8\"]\n"}})));
        assert_eq!(risk_of(&closing).0, RiskLevel::Low, "{:?}", closing.risk);

        for spelling in ["prd", "PROD ", "live", "Production"] {
            let e = p.evaluate(&input(
                serde_json::json!({"type": "k8s.deploy", "environment": spelling, "tags": []}),
            ));
            assert_eq!(risk_of(&e).0, RiskLevel::Medium, "{spelling}");
            assert_eq!(
                e.reason, "production changes need one approver",
                "{spelling}"
            );
        }
        let flag_in_prd = p.evaluate(&input(
            serde_json::json!({"type": "flag.flip", "environment": "prd", "tags": []}),
        ));
        assert!(!quick(&flag_in_prd), "{}", flag_in_prd.reason);

        let admin = p.evaluate(&input(serde_json::json!({
            "type": "flag.flip", "environment": "staging", "tags": [],
            "parameters": {"role": "ops", "policy": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}})));
        let (level, reasons) = risk_of(&admin);
        assert_eq!(level, RiskLevel::Critical, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("wildcard IAM")),
            "{reasons:?}"
        );
        assert!(!quick(&admin), "{}", admin.reason);
        let service_wildcard = p.evaluate(&input(serde_json::json!({
            "type": "iam.role.update", "environment": "dev",
            "parameters": {"actions": ["s3:*"]}})));
        assert_eq!(risk_of(&service_wildcard).0, RiskLevel::Critical);

        let export = p.evaluate(&input(serde_json::json!({
            "type": "db.export", "environment": "prod", "tags": ["pii"],
            "parameters": {"table": "customers", "rows": 52000}})));
        let (level, reasons) = risk_of(&export);
        assert_eq!(level, RiskLevel::High, "{reasons:?}");
        assert!(
            reasons.contains(&"touches 52000 rows".to_owned()),
            "{reasons:?}"
        );

        let flag = p.evaluate(&input(
            serde_json::json!({"type": "flag.flip", "environment": "staging", "tags": []}),
        ));
        assert_eq!(risk_of(&flag), (RiskLevel::Low, vec![]));
        assert!(quick(&flag));
    }

    /// A policy's own risk: malformed is a deny (the policy meant to judge and could not), and
    /// a high one turns quick-approve off whatever the decision rule said.
    #[test]
    fn a_policys_risk_is_checked_and_high_risk_is_never_quick_approved() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.rego");
        let decision = "decision := {\"outcome\": \"require_approval\", \"reason\": \"r\", \"quorum\": 1, \"ttl_seconds\": 60, \"quick_approve\": true}";
        let load = |risk: &str| {
            std::fs::write(
                &path,
                format!("package countersign\nimport rego.v1\n{decision}\n{risk}\n"),
            )
            .expect("write");
            let p = Policy::from_file(&path).expect("loads");
            p.evaluate(&input(serde_json::json!({"environment": "dev"})))
        };
        for bad in [
            "risk := {\"level\": \"extreme\", \"reasons\": []}",
            "risk := {\"level\": \"low\"}",
            "risk := {\"level\": \"low\", \"reasons\": [\"\"]}",
            "risk := {\"level\": \"low\", \"reasons\": [\"a\\u202eb\"]}",
            "risk := \"low\"",
        ] {
            let e = load(bad);
            assert_eq!(kind(&e), "deny", "{bad}: {}", e.reason);
            assert!(e.reason.contains("risk"), "{bad}: {}", e.reason);
        }
        let high = load("risk := {\"level\": \"high\", \"reasons\": [\"many rows\"]}");
        assert!(!quick(&high), "{:?}", high.outcome);
        let low = load("risk := {\"level\": \"low\", \"reasons\": []}");
        assert!(quick(&low));
        let unjudged = load("");
        assert_eq!(unjudged.risk, None);
        assert!(quick(&unjudged));
        let undefined = load(
            "risk := {\"level\": \"low\", \"reasons\": []} if input.action.environment == \"prod\"",
        );
        assert_eq!(undefined.risk, None, "no rule body matched: no judgement");
    }

    #[test]
    fn broken_policy_file_is_refused_and_reload_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.rego");
        std::fs::write(&path, DEFAULT_POLICY).expect("write");
        let p = Policy::from_file(&path).expect("loads");
        let before = p.hash();
        std::fs::write(&path, "package countersign\n\ndecision := {").expect("write");
        assert!(p.reload().is_err());
        assert_eq!(p.hash(), before);
        let read = p.evaluate(&input(
            serde_json::json!({"type": "x.read", "environment": "dev", "tags": []}),
        ));
        assert_eq!(kind(&read), "allow");
        std::fs::write(&path, "package countersign\nimport rego.v1\ndecision := {\"outcome\": \"deny\", \"reason\": \"frozen\"}\n").expect("write");
        let (old, new) = p.reload().expect("reloads").expect("changed");
        assert_eq!(old, before);
        assert_ne!(new, before);
        assert_eq!(kind(&p.evaluate(&input(serde_json::json!({})))), "deny");
    }

    #[test]
    fn malformed_or_missing_decisions_deny() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.rego");
        for body in [
            "decision := {\"outcome\": \"require_approval\", \"reason\": \"no quorum\"}",
            "decision := {\"outcome\": \"maybe\", \"reason\": \"?\"}",
            "decision := {\"outcome\": \"allow\", \"reason\": \"x\", \"extra\": 1}",
            "decision := {\"outcome\": \"require_approval\", \"reason\": \"r\", \"quorum\": 0, \"ttl_seconds\": 60}",
            "decision := {\"outcome\": \"allow\", \"reason\": \"only prod\"} if input.action.environment == \"prod\"",
            "decision := {\"outcome\": \"require_approval\", \"reason\": \"r\", \"quorum\": 1, \"ttl_seconds\": 60, \"quick_approve\": true, \"verification_code\": true}",
        ] {
            std::fs::write(
                &path,
                format!("package countersign\nimport rego.v1\n{body}\n"),
            )
            .expect("write");
            let p = Policy::from_file(&path).expect("loads");
            let e = p.evaluate(&input(serde_json::json!({"environment": "dev"})));
            assert_eq!(kind(&e), "deny", "{body}: {}", e.reason);
        }
    }

    #[test]
    fn sign_in_age_outside_a_minute_to_a_month_is_refused() {
        let raw = |age: u32| RawDecision {
            outcome: "require_approval".into(),
            reason: "r".into(),
            quorum: Some(1),
            groups: None,
            ttl_seconds: Some(600),
            require_hardware_key: None,
            quick_approve: None,
            verification_code: None,
            require_idp_enrolment: None,
            max_sign_in_age_seconds: Some(age),
            require_attested_key: None,
            escalation: None,
            remind_before_seconds: None,
            review_quorum: None,
            review_groups: None,
        };
        assert!(outcome(&raw(59)).is_err());
        assert!(outcome(&raw(MAX_SIGN_IN_AGE_SECONDS + 1)).is_err());
        assert!(matches!(
            outcome(&raw(3600)),
            Ok(PolicyOutcome::RequireApproval {
                max_sign_in_age_seconds: Some(3600),
                ..
            })
        ));
    }

    fn with_steps(escalation: serde_json::Value, reminders: serde_json::Value) -> RawDecision {
        RawDecision {
            outcome: "require_approval".into(),
            reason: "r".into(),
            quorum: Some(1),
            groups: Some(vec!["oncall".into()]),
            ttl_seconds: Some(600),
            require_hardware_key: None,
            quick_approve: None,
            verification_code: None,
            require_idp_enrolment: None,
            max_sign_in_age_seconds: None,
            require_attested_key: None,
            escalation: serde_json::from_value(escalation).expect("steps"),
            remind_before_seconds: serde_json::from_value(reminders).expect("points"),
            review_quorum: None,
            review_groups: None,
        }
    }

    #[test]
    fn escalation_and_reminders_must_fall_inside_the_requests_life_in_order() {
        use serde_json::json;
        let ok = with_steps(
            json!([{"after_seconds": 60, "add_groups": ["leads"]}, {"after_seconds": 300, "notify": ["pager"]}]),
            json!([30, 120]),
        );
        let PolicyOutcome::RequireApproval {
            escalation,
            remind_before_seconds,
            ..
        } = outcome(&ok).expect("valid")
        else {
            panic!("require_approval");
        };
        assert_eq!(escalation.len(), 2);
        assert_eq!(remind_before_seconds, [120, 30]);
        for (steps, points, why) in [
            (
                json!([{"after_seconds": 600, "add_groups": ["leads"]}]),
                json!([]),
                "at expiry",
            ),
            (
                json!([{"after_seconds": 0, "add_groups": ["leads"]}]),
                json!([]),
                "at once",
            ),
            (
                json!([{"after_seconds": 300, "add_groups": ["a"]}, {"after_seconds": 200, "add_groups": ["b"]}]),
                json!([]),
                "out of order",
            ),
            (json!([{"after_seconds": 60}]), json!([]), "does nothing"),
            (
                json!([{"after_seconds": 60, "add_groups": ["lead\u{200b}s"]}]),
                json!([]),
                "hidden character",
            ),
            (json!([]), json!([600]), "reminder at creation"),
            (json!([]), json!([0]), "reminder at expiry"),
            (json!([]), json!([60, 60]), "repeated reminder"),
            (
                json!([]),
                json!([1, 2, 3, 4, 5, 6, 7, 8, 9]),
                "too many reminders",
            ),
        ] {
            assert!(outcome(&with_steps(steps, points)).is_err(), "{why}");
        }
        let mut anyone = with_steps(
            json!([{"after_seconds": 60, "add_groups": ["leads"]}]),
            json!([]),
        );
        anyone.groups = None;
        assert!(
            outcome(&anyone).is_err(),
            "adding groups when anyone may decide"
        );
    }
}
