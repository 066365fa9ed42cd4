//! CSV: one row per request, RFC 4180 (CRLF, quoted where needed), UTF-8 with a byte-order
//! mark so spreadsheets read it as UTF-8. Agent-written text that a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`
//! (OWASP's advice against CSV injection).

use std::io::Write;

use countersign_mirror::{Mirror, RequestSummary, SearchQuery};

use crate::{Control, Pages, ReportError};

/// The header row.
pub const HEADER: [&str; 19] = [
    "request_id",
    "created_at",
    "decided_at",
    "time_to_decision_seconds",
    "action_type",
    "resource",
    "environment",
    "requester",
    "on_behalf_of",
    "approvers",
    "verdict",
    "approvals",
    "denials",
    "quorum",
    "hardware_keys_only",
    "outcome",
    "grant_redeemed_at",
    "tags",
    "justification",
];

/// Neutralises a cell a spreadsheet would evaluate.
pub fn safe_cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

fn row(r: &RequestSummary) -> [String; 19] {
    [
        r.id.clone(),
        r.created_at.to_string(),
        r.decided_at.map(|t| t.to_string()).unwrap_or_default(),
        r.time_to_decision_ms
            .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
            .unwrap_or_default(),
        safe_cell(&r.action_type),
        safe_cell(&r.resource),
        safe_cell(&r.environment),
        safe_cell(&r.requester),
        safe_cell(r.on_behalf_of.as_deref().unwrap_or_default()),
        safe_cell(&r.approvers.join(" ")),
        r.status.clone(),
        r.approvals.to_string(),
        r.denials.to_string(),
        r.quorum.to_string(),
        r.hardware_only.to_string(),
        r.outcome.clone().unwrap_or_default(),
        r.redeemed_at.map(|t| t.to_string()).unwrap_or_default(),
        safe_cell(&r.tags.join(" ")),
        safe_cell(&r.justification),
    ]
}

/// Writes the requests matching `q` as CSV; returns how many rows.
pub async fn write<W: Write>(
    mirror: &Mirror,
    q: &SearchQuery,
    out: W,
    control: Control<'_>,
) -> Result<u64, ReportError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    out.write_all(b"\xEF\xBB\xBF")?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(HEADER)?;
    let mut pages = Pages::new(mirror, q, control).await?;
    while let Some(page) = pages.next().await? {
        for r in &page {
            w.write_record(row(r))?;
        }
    }
    w.flush()?;
    Ok(pages.done())
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
