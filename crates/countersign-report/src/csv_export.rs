//! CSV: one row per request, RFC 4180 (CRLF, quoted where needed), UTF-8 with a byte-order
//! mark so spreadsheets read it as UTF-8. Agent-written text that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`
//! (OWASP's advice against CSV injection).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use countersign_core::Timestamp;
use countersign_mirror::{ExportRow, Mirror, SearchQuery};

use crate::{Control, ExportProgress, ReportError};

/// The header row; docs/audit.md says what each column holds.
pub const HEADER: [&str; 30] = [
    "request_id",
    "created_at",
    "decided_at",
    "time_to_decision_seconds",
    "action_type",
    "resource",
    "environment",
    "requester",
    "requester_authentication",
    "on_behalf_of",
    "policy_reason",
    "quorum",
    "verdict",
    "approvals",
    "denials",
    "approved_by",
    "denied_by",
    "decision_key_ids",
    "hardware_keys_only",
    "attested_keys_only",
    "attesting_roots",
    "comments",
    "outcome",
    "grant_redeemed_at",
    "tags",
    "justification",
    "break_glass",
    "review_state",
    "reviewed_by",
    "review_concerns",
];

/// Neutralises a cell a spreadsheet would evaluate.
pub fn safe_cell(text: &str) -> Cow<'_, str> {
    // Control, bidirectional and invisible characters are shown as escapes: a spreadsheet
    // would otherwise reorder or hide them.
    let text = countersign_core::text::escape_for_display(text, true);
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => text,
    }
}

/// Whether every decision had a property: blank when nobody signed, since it says nothing then.
fn every_decision(decisions: i64, all: bool) -> &'static str {
    match (decisions, all) {
        (0, _) => "",
        (_, true) => "true",
        (_, false) => "false",
    }
}

/// Writes the requests matching `q` as CSV; returns how many rows.
pub async fn write<W: Write>(
    mirror: &Mirror,
    q: &SearchQuery,
    out: W,
    control: Control<'_>,
) -> Result<u64, ReportError> {
    let total = mirror.count(q).await?;
    (control.progress)(ExportProgress { done: 0, total });
    blocking(|| write_rows(mirror, q, out, control, total))
}

/// Runs `f`, which blocks, without stalling other tasks on a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn time_cell(buf: &mut String, ms: Option<i64>) {
    buf.clear();
    if let Some(t) = ms.and_then(|ms| Timestamp::from_millis(ms).ok()) {
        let _ = write!(buf, "{t}");
    }
}

fn write_rows<W: Write>(
    mirror: &Mirror,
    q: &SearchQuery,
    out: W,
    control: Control<'_>,
    total: u64,
) -> Result<u64, ReportError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    out.write_all(b"\xEF\xBB\xBF")?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(HEADER)?;
    let (mut created, mut decided, mut seconds, mut redeemed) =
        (String::new(), String::new(), String::new(), String::new());
    let (mut approvals, mut denials, mut quorum) = (String::new(), String::new(), String::new());
    let mut concerns = String::new();
    let mut failure: Option<ReportError> = None;
    let mut done = 0u64;
    let n = mirror.export_rows(q, |r: &ExportRow<'_>| {
        if done.is_multiple_of(10_000) {
            (control.progress)(ExportProgress { done, total });
            if control.cancelled() {
                failure = Some(ReportError::Cancelled);
                return false;
            }
        }
        time_cell(&mut created, Some(r.created_at));
        time_cell(&mut decided, r.decided_at);
        time_cell(&mut redeemed, r.redeemed_at);
        seconds.clear();
        if let Some(d) = r.decided_at {
            let _ = write!(seconds, "{:.3}", (d - r.created_at) as f64 / 1000.0);
        }
        approvals.clear();
        let _ = write!(approvals, "{}", r.approvals);
        denials.clear();
        let _ = write!(denials, "{}", r.denials);
        quorum.clear();
        let _ = write!(quorum, "{}", r.quorum);
        let signed = r.approvals + r.denials;
        let hardware = every_decision(signed, r.hardware_only);
        let attested = every_decision(signed, r.attested_only);
        let break_glass = r.policy_outcome == "break_glass";
        let review_state = match (break_glass, r.reviewed_at) {
            (false, _) => "",
            (true, Some(_)) => "reviewed",
            (true, None) => "awaiting review",
        };
        concerns.clear();
        if break_glass {
            let _ = write!(concerns, "{}", r.review_concerns);
        }
        let record: [&str; 30] = [
            r.id,
            &created,
            &decided,
            &seconds,
            &safe_cell(r.action_type),
            &safe_cell(r.resource),
            &safe_cell(r.environment),
            &safe_cell(r.requester),
            &safe_cell(r.requester_auth.unwrap_or_default()),
            &safe_cell(r.on_behalf_of.unwrap_or_default()),
            &safe_cell(r.policy_reason),
            &quorum,
            r.status,
            &approvals,
            &denials,
            &safe_cell(r.approved_by),
            &safe_cell(r.denied_by),
            r.key_ids,
            hardware,
            attested,
            &safe_cell(r.attesting_roots),
            &safe_cell(r.comments),
            r.outcome.unwrap_or_default(),
            &redeemed,
            &safe_cell(r.tags),
            &safe_cell(r.justification),
            if break_glass { "true" } else { "false" },
            review_state,
            &safe_cell(r.reviewed_by),
            &concerns,
        ];
        if let Err(e) = w.write_record(record) {
            failure = Some(e.into());
            return false;
        }
        done += 1;
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    w.flush()?;
    (control.progress)(ExportProgress { done: n, total });
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        assert_eq!(safe_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(safe_cell("+1"), "'+1");
        assert_eq!(safe_cell("-2"), "'-2");
        assert_eq!(safe_cell("@SUM"), "'@SUM");
        assert_eq!(safe_cell("cluster/prod"), "cluster/prod");
        assert_eq!(safe_cell(""), "");
    }
}
