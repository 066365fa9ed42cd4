//! The PDF report for auditors, laid out with `pdf-writer` on A4 pages in the standard
//! Helvetica fonts (nothing embedded, every viewer has them; text outside Windows-1252 shows as
//! `?`, the CSV and the evidence bundle keep it exactly).

use countersign_core::Timestamp;
use countersign_mirror::{Anchor, Mirror, ReportStats, SearchQuery, percentile};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use crate::{Control, ExportProgress, ReportError, time_text};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");
/// Denials and expiries listed one by one; the rest are counted.
const EXCEPTIONS_LISTED: u32 = 2000;
/// Decisions listed one by one (a few hundred pages); beyond, the report says how many more
/// there are and the CSV and the bundle list them all.
const DECISIONS_LISTED: u32 = 10_000;

/// Text as Windows-1252 bytes (ASCII and Latin-1 pass; anything else becomes `?`), with
/// control, bidirectional and invisible characters first made visible as escapes.
fn win_ansi(text: &str) -> Vec<u8> {
    countersign_core::text::escape_for_display(text, false)
        .chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}

/// `text` in lines of at most `max` characters, broken at spaces where it can be and inside
/// words (ids, paths) where it cannot: nothing is cut off.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let used = line.chars().count();
                let room = if used == 0 {
                    max
                } else {
                    max.saturating_sub(used + 1)
                };
                if word.len() <= room {
                    if used > 0 {
                        line.push(' ');
                    }
                    line.extend(word.iter());
                    break;
                }
                if used > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                lines.push(word.drain(..max).collect());
            }
        }
        lines.push(line);
    }
    while lines.len() > 1 && lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// A table: where each column starts, and its header, repeated on every page it spans.
struct Table<'a> {
    columns: &'a [f32],
    header: &'a [&'a str],
}

impl Table<'_> {
    /// How many characters fit in column `i` at 9 points (Helvetica averages about 5 points a
    /// character in this text; a little room is left).
    fn chars(&self, i: usize) -> usize {
        let end = self
            .columns
            .get(i + 1)
            .copied()
            .unwrap_or(WIDTH - 2.0 * MARGIN);
        (((end - self.columns[i]) - 6.0) / 5.0).max(4.0) as usize
    }
}

/// Pages being laid out top to bottom.
struct Layout {
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        let mut l = Self {
            pages: Vec::new(),
            y: 0.0,
        };
        l.new_page();
        l
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = HEIGHT - MARGIN;
    }

    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.new_page();
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Makes room for `height` points, starting a page when needed.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
    }

    fn text_at(&mut self, x: f32, font: Name<'static>, size: f32, text: &str) {
        let y = self.y;
        let bytes = win_ansi(text);
        let c = self.page();
        c.begin_text();
        c.set_font(font, size);
        c.next_line(x, y);
        c.show(Str(&bytes));
        c.end_text();
    }

    fn line(&mut self, font: Name<'static>, size: f32, text: &str) {
        self.room(size + 4.0);
        self.y -= size + 4.0;
        self.text_at(MARGIN, font, size, text);
    }

    fn heading(&mut self, text: &str) {
        self.room(60.0);
        self.y -= 10.0;
        self.line(BOLD, 13.0, text);
        self.y -= 2.0;
    }

    /// A table row: cells at column positions.
    fn row(&mut self, font: Name<'static>, columns: &[f32], cells: &[String]) {
        self.room(13.0);
        self.y -= 13.0;
        for (x, cell) in columns.iter().zip(cells) {
            self.text_at(MARGIN + x, font, 9.0, cell);
        }
    }

    /// Starts `table` with its header.
    fn table_header(&mut self, table: &Table<'_>) {
        let cells: Vec<String> = table.header.iter().map(|h| (*h).to_owned()).collect();
        self.row(BOLD, table.columns, &cells);
    }

    /// A row of `table`, each cell wrapped to its column; a row never splits across pages, and
    /// a table that goes on to a new page repeats its header there.
    fn table_row(&mut self, table: &Table<'_>, cells: &[String]) {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| wrap(c, table.chars(i)))
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let height = 11.0 * lines as f32 + 2.0;
        if self.y - height < MARGIN {
            self.new_page();
            self.table_header(table);
        }
        self.y -= 2.0;
        for i in 0..lines {
            self.y -= 11.0;
            for (x, cell) in table.columns.iter().zip(&wrapped) {
                if let Some(text) = cell.get(i) {
                    self.text_at(MARGIN + x, REGULAR, 9.0, text);
                }
            }
        }
    }

    /// A paragraph of `size`-point text wrapped to the page.
    fn paragraph(&mut self, font: Name<'static>, size: f32, text: &str) {
        let per_line = ((WIDTH - 2.0 * MARGIN) / (size * 0.52)) as usize;
        for line in wrap(text, per_line) {
            self.line(font, size, &line);
        }
    }
}

/// A duration for people: `850 ms`, `42.0 s`, `3 min 05 s`, `2 h 10 min`.
pub fn duration_text(ms: i64) -> String {
    match ms {
        ..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

fn filters_text(q: &SearchQuery) -> String {
    let mut parts = Vec::new();
    if !q.text.trim().is_empty() {
        parts.push(format!("text \"{}\"", q.text.trim()));
    }
    for (name, value) in [
        ("verdict", &q.status),
        ("approver", &q.approver),
        ("requester", &q.requester),
        ("type", &q.action_type),
        ("environment", &q.environment),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name} {v}"));
        }
    }
    if !q.tags.is_empty() {
        parts.push(format!("tags {}", q.tags.join(", ")));
    }
    if parts.is_empty() {
        "none (every request)".into()
    } else {
        parts.join("; ")
    }
}

fn period_text(q: &SearchQuery, stats: &ReportStats) -> String {
    let from = q
        .from
        .map(|t| t.to_string())
        .or_else(|| stats.span.map(|(a, _)| time_text(a)));
    let to =
        q.to.map(|t| t.to_string())
            .or_else(|| stats.span.map(|(_, b)| time_text(b)));
    match (from, to) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "no requests".into(),
    }
}

fn volume_chart(l: &mut Layout, stats: &ReportStats) {
    let height = 120.0;
    l.room(height + 50.0);
    let max = stats
        .volume
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1);
    let top = l.y - 10.0;
    let bottom = top - height;
    let span = stats
        .span
        .map(|(a, b)| (b - a) / stats.bucket_ms + 1)
        .unwrap_or(1)
        .max(1) as f32;
    // The y axis's labels take the first 36 points.
    let left = MARGIN + 36.0;
    let chart_width = WIDTH - MARGIN - left;
    let bar = chart_width / span;
    let first = stats.span.map_or(0, |(a, _)| a);
    {
        let c = l.page();
        c.set_stroke_rgb(0.4, 0.4, 0.4);
        c.set_line_width(0.5);
        // Axes, and a tick at half and full height.
        c.move_to(left, top);
        c.line_to(left, bottom);
        c.line_to(left + chart_width, bottom);
        c.stroke();
        c.set_stroke_rgb(0.85, 0.85, 0.85);
        for fraction in [0.5, 1.0] {
            c.move_to(left, bottom + height * fraction);
            c.line_to(left + chart_width, bottom + height * fraction);
        }
        c.stroke();
        c.set_fill_rgb(0.20, 0.40, 0.70);
        for (start, n) in &stats.volume {
            let i = ((start - first) / stats.bucket_ms) as f32;
            let h = height * (*n as f32) / (max as f32);
            c.rect(left + i * bar + bar * 0.1, bottom, (bar * 0.8).max(0.5), h);
            c.fill_nonzero();
        }
        c.set_fill_rgb(0.0, 0.0, 0.0);
    }
    // Y labels: requests per bucket at 0, half and the maximum.
    for (value, y) in [
        (0, bottom),
        (max / 2, bottom + height * (max / 2) as f32 / max as f32),
        (max, top),
    ] {
        l.y = y - 3.0;
        l.text_at(MARGIN, REGULAR, 8.0, &value.to_string());
    }
    // X labels: the first bucket, the middle and the last.
    l.y = bottom - 12.0;
    if let Some((a, b)) = stats.span {
        l.text_at(left, REGULAR, 8.0, &time_text(a));
        l.text_at(
            left + chart_width / 2.0 - 45.0,
            REGULAR,
            8.0,
            &time_text(a + (b - a) / 2),
        );
        l.text_at(WIDTH - MARGIN - 90.0, REGULAR, 8.0, &time_text(b));
    }
    l.y -= 4.0;
    l.line(
        REGULAR,
        8.0,
        &format!(
            "Requests per {} (y) by creation time (x); at most {max} in one {}.",
            duration_text(stats.bucket_ms),
            duration_text(stats.bucket_ms)
        ),
    );
}

/// The evidence bundle written with a report, which the report names so each proves the
/// other: the bundle's hash is in the PDF, and both are anchored to one checkpoint.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The bundle's file name.
    pub file: String,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Requests in it.
    pub requests: u64,
    /// Event lines in it.
    pub events: u64,
    /// The size of the checkpoint it is anchored to.
    pub tree_size: u64,
}

/// Builds the PDF report for the requests matching `q`.
pub async fn write(
    mirror: &Mirror,
    q: &SearchQuery,
    now: Timestamp,
    evidence: Option<&Evidence>,
    control: Control<'_>,
) -> Result<Vec<u8>, ReportError> {
    let anchor: Anchor = mirror.anchor().await?;
    if let Some(e) = evidence
        && e.tree_size != anchor.checkpoint.checkpoint.tree_size
    {
        return Err(ReportError::Io(std::io::Error::other(format!(
            "the evidence bundle is anchored to checkpoint {} but the mirror now to {}: export again",
            e.tree_size, anchor.checkpoint.checkpoint.tree_size
        ))));
    }
    let stats = mirror.report_stats(q, EXCEPTIONS_LISTED, 60).await?;
    let total = stats.totals.total;
    (control.progress)(ExportProgress { done: 0, total });
    if control
        .cancel
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    {
        return Err(ReportError::Cancelled);
    }
    let cp = &anchor.checkpoint.checkpoint;
    let mut l = Layout::new();
    l.line(BOLD, 18.0, "Countersign audit report");
    l.y -= 6.0;
    l.line(REGULAR, 10.0, &format!("Log: {}", anchor.origin));
    l.line(
        REGULAR,
        10.0,
        &format!("Period: {}", period_text(q, &stats)),
    );
    l.paragraph(REGULAR, 10.0, &format!("Filters: {}", filters_text(q)));
    l.line(REGULAR, 10.0, &format!("Generated: {now}"));
    l.line(
        REGULAR,
        10.0,
        &format!(
            "Anchored to checkpoint {} signed {} by service key {}",
            cp.tree_size,
            cp.timestamp,
            anchor.server_key.key_id().short()
        ),
    );
    l.line(
        REGULAR,
        8.0,
        &format!("Root hash {}", cp.root_hash.to_hex()),
    );
    let witnesses: Vec<&str> = anchor
        .checkpoint
        .signatures
        .iter()
        .filter(|s| s.name != anchor.origin)
        .map(|s| s.name.as_str())
        .collect();
    if !witnesses.is_empty() {
        l.line(
            REGULAR,
            10.0,
            &format!("Cosigned by: {}", witnesses.join(", ")),
        );
    }
    l.line(
        REGULAR,
        9.0,
        "Every event behind these figures was verified against this checkpoint; the evidence bundle proves it offline.",
    );
    match evidence {
        Some(e) => {
            l.line(
                BOLD,
                10.0,
                &format!(
                    "Evidence bundle: {} ({} requests, {} events, anchored to checkpoint {})",
                    e.file, e.requests, e.events, e.tree_size
                ),
            );
            l.line(REGULAR, 9.0, &format!("SHA-256 {}", e.sha256));
            l.paragraph(
                REGULAR,
                9.0,
                &format!(
                    "To check: sha256sum {} must print this hash, and `countersign audit verify {} --server-key-id {}` must print VERIFIED.",
                    e.file,
                    e.file,
                    anchor.server_key.key_id()
                ),
            );
        }
        None => l.line(
            REGULAR,
            9.0,
            "No evidence bundle was written with this report (export one with the same filters).",
        ),
    }

    l.heading("How agents authenticated");
    for (how, n) in &stats.authentication {
        let text = match how.as_deref() {
            Some("api_token") => "API token issued by this service".to_owned(),
            Some(other) => match other.strip_prefix("workload_token:") {
                Some(issuer) => format!("Workload identity token from {issuer}"),
                None => other.to_owned(),
            },
            None => "Not recorded (requests from before it was kept)".to_owned(),
        };
        l.paragraph(REGULAR, 10.0, &format!("{text}: {n}"));
    }

    l.heading("Totals by verdict");
    let t = &stats.totals;
    for (name, n) in [
        ("Requests", t.total),
        ("Approved", t.approved),
        ("Denied", t.denied),
        ("Expired", t.expired),
        ("Cancelled", t.cancelled),
        ("Pending", t.pending),
    ] {
        l.line(REGULAR, 10.0, &format!("{name}: {n}"));
    }

    l.heading("Time to decision");
    let times = &stats.decision_times_ms;
    if times.is_empty() {
        l.line(REGULAR, 10.0, "No decided requests.");
    } else {
        l.line(REGULAR, 10.0, &format!("Decided requests: {}", times.len()));
        for (name, p) in [
            ("p50", 50.0),
            ("p90", 90.0),
            ("p95", 95.0),
            ("p99", 99.0),
            ("max", 100.0),
        ] {
            if let Some(v) = percentile(times, p) {
                l.line(REGULAR, 10.0, &format!("{name}: {}", duration_text(v)));
            }
        }
    }

    l.heading("Volume over time");
    volume_chart(&mut l, &stats);

    l.heading("Per approver");
    let table = Table {
        columns: &[0.0, 220.0, 300.0, 380.0],
        header: &["Approver", "Approvals", "Denials", "Decisions"],
    };
    l.table_header(&table);
    for a in &stats.approvers {
        l.table_row(
            &table,
            &[
                a.approver_id.clone(),
                a.approvals.to_string(),
                a.denials.to_string(),
                (a.approvals + a.denials).to_string(),
            ],
        );
    }

    l.heading("Per action type");
    let table = Table {
        columns: &[0.0, 200.0, 260.0, 320.0, 380.0, 440.0],
        header: &[
            "Action type",
            "Requests",
            "Approved",
            "Denied",
            "Expired",
            "Pending",
        ],
    };
    l.table_header(&table);
    for r in &stats.types {
        l.table_row(
            &table,
            &[
                r.action_type.clone(),
                r.total.to_string(),
                r.approved.to_string(),
                r.denied.to_string(),
                r.expired.to_string(),
                r.pending.to_string(),
            ],
        );
    }

    let (decisions, decisions_total) = mirror.decision_lines(q, DECISIONS_LISTED).await?;
    l.heading(&format!("Every decision ({decisions_total})"));
    l.paragraph(
        REGULAR,
        8.0,
        "Key: the kind of key that signed, its id (SHA-256 of the public key) and its attestation: \
         \"attested by <root>\" when a manufacturer's root the deployment trusts vouched for the \
         device at enrolment (a TPM's endorsement key certificate, through a credential only that \
         TPM could activate, for the attestation key that certified the key; or a token's PIV \
         attestation), as the decision's event records; \"claimed\" otherwise, noting when a TPM \
         attestation key not chained to a trusted root certified it (TPM2_Certify).",
    );
    let table = Table {
        columns: &[0.0, 78.0, 190.0, 280.0, 322.0],
        header: &[
            "Recorded",
            "Request",
            "Approver",
            "Verdict",
            "Key · comment",
        ],
    };
    l.table_header(&table);
    for d in &decisions {
        let attestation = match (&d.attested_by, &d.certified_by) {
            (Some(root), _) => format!("attested by {root}"),
            (None, Some(ak)) => format!("claimed (TPM-certified by AK {}, unchained)", ak.short()),
            (None, None) => "claimed".to_owned(),
        };
        let comment = if d.comment.is_empty() {
            String::new()
        } else {
            format!("\n\"{}\"", d.comment)
        };
        l.table_row(
            &table,
            &[
                d.recorded_at.to_string(),
                format!("{} {} ({})", d.action_type, d.resource, &d.request_id[..8]),
                d.approver_id.clone(),
                match d.verdict {
                    countersign_core::Verdict::Approve => "approve".into(),
                    countersign_core::Verdict::Deny => "deny".into(),
                },
                format!(
                    "{} {} · {attestation}{comment}",
                    d.key_kind.label(),
                    d.key_id.short()
                ),
            ],
        );
    }
    if decisions_total > decisions.len() as u64 {
        l.paragraph(
            REGULAR,
            9.0,
            &format!(
                "... and {} more decisions: the CSV export and the evidence bundle list every one.",
                decisions_total - decisions.len() as u64
            ),
        );
    }

    l.heading(&format!(
        "Break-glass uses ({}), granted without approval",
        stats.break_glass_total
    ));
    if stats.break_glass_total == 0 {
        l.line(REGULAR, 10.0, "None.");
    } else {
        let table = Table {
            columns: &[0.0, 100.0, 190.0, 300.0, 380.0],
            header: &["Granted", "Action type", "Resource", "Requester", "Review"],
        };
        l.table_header(&table);
        for r in &stats.break_glass {
            let reviewers = r.reviewed_by.split_whitespace().count();
            let review = match r.reviewed_at {
                Some(at) => format!(
                    "reviewed {} by {}{}",
                    Timestamp::from_millis(at)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    r.reviewed_by,
                    match r.review_concerns {
                        0 => String::new(),
                        n => format!(" ({n} concern{})", if n == 1 { "" } else { "s" }),
                    }
                ),
                None => format!("AWAITING REVIEW ({reviewers}/{})", r.review_quorum),
            };
            l.table_row(
                &table,
                &[
                    Timestamp::from_millis(r.created_at)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    r.action_type.clone(),
                    r.resource.clone(),
                    r.requester.clone(),
                    review,
                ],
            );
        }
        if stats.break_glass_total > stats.break_glass.len() as u64 {
            l.paragraph(
                REGULAR,
                9.0,
                &format!(
                    "... and {} more: the CSV export lists every one (break_glass, review_state).",
                    stats.break_glass_total - stats.break_glass.len() as u64
                ),
            );
        }
    }

    l.heading(&format!(
        "Denials and expiries ({})",
        stats.exceptions_total
    ));
    let table = Table {
        columns: &[0.0, 100.0, 145.0, 255.0, 395.0],
        header: &[
            "Created",
            "Verdict",
            "Action type",
            "Resource",
            "Requester / by",
        ],
    };
    l.table_header(&table);
    for r in &stats.exceptions {
        let by = if r.approvers.is_empty() {
            r.requester.clone()
        } else {
            format!("{} / {}", r.requester, r.approvers.join(" "))
        };
        l.table_row(
            &table,
            &[
                r.created_at.to_string(),
                r.status.clone(),
                r.action_type.clone(),
                r.resource.clone(),
                by,
            ],
        );
    }
    if stats.exceptions_total > stats.exceptions.len() as u64 {
        l.paragraph(
            REGULAR,
            9.0,
            &format!(
                "... and {} more: the CSV export and the evidence bundle list every one.",
                stats.exceptions_total - stats.exceptions.len() as u64
            ),
        );
    }
    (control.progress)(ExportProgress { done: total, total });
    Ok(assemble(l, now))
}

fn assemble(mut l: Layout, now: Timestamp) -> Vec<u8> {
    let count = l.pages.len();
    // Page numbers go on last, when the count is known.
    for (i, page) in l.pages.iter_mut().enumerate() {
        let label = win_ansi(&format!("Page {} of {count}", i + 1));
        page.begin_text();
        page.set_font(REGULAR, 8.0);
        page.next_line(WIDTH - MARGIN - 60.0, MARGIN / 2.0);
        page.show(Str(&label));
        page.end_text();
    }
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first = 6;
    let page_ids: Vec<Ref> = (0..count).map(|i| Ref::new(first + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(count as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let created = now.to_string();
    pdf.document_info(info)
        .title(TextStr("Countersign audit report"))
        .creator(TextStr("Countersign"))
        .subject(TextStr(&created));
    for (i, content) in l.pages.into_iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(850), "850 ms");
        assert_eq!(duration_text(42_000), "42.0 s");
        assert_eq!(duration_text(185_000), "3 min 05 s");
        assert_eq!(duration_text(7_800_000), "2 h 10 min");
    }

    #[test]
    fn wrapping_keeps_every_character() {
        for (text, width) in [
            ("carol@example.com approved cluster/prod/web-1", 8),
            ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0", 10),
            ("line one\nline two", 40),
        ] {
            let lines = wrap(text, width);
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{lines:?}"
            );
            let kept: String = lines
                .concat()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let given: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(kept, given);
        }
    }

    #[test]
    fn a_table_repeats_its_header_on_every_page_it_spans() {
        let mut l = Layout::new();
        let table = Table {
            columns: &[0.0, 200.0],
            header: &["Approver", "Decisions"],
        };
        l.table_header(&table);
        for i in 0..300 {
            l.table_row(
                &table,
                &[format!("approver-{i}@example.com"), i.to_string()],
            );
        }
        assert!(l.pages.len() >= 4, "{} pages", l.pages.len());
        for page in l.pages {
            let bytes = page.finish();
            assert!(
                bytes.windows(10).any(|w| w == b"(Approver)"),
                "a page without the header"
            );
        }
    }

    #[test]
    fn text_outside_windows_1252_becomes_a_question_mark() {
        assert_eq!(win_ansi("café ✓"), b"caf\xe9 ?".to_vec());
    }
}
