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

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('~');
        s
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
    l.room(height + 40.0);
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
    let chart_width = WIDTH - 2.0 * MARGIN;
    let bar = chart_width / span;
    let first = stats.span.map_or(0, |(a, _)| a);
    {
        let c = l.page();
        c.set_stroke_rgb(0.6, 0.6, 0.6);
        c.set_line_width(0.5);
        c.move_to(MARGIN, bottom);
        c.line_to(MARGIN + chart_width, bottom);
        c.stroke();
        c.set_fill_rgb(0.20, 0.40, 0.70);
        for (start, n) in &stats.volume {
            let i = ((start - first) / stats.bucket_ms) as f32;
            let h = height * (*n as f32) / (max as f32);
            c.rect(
                MARGIN + i * bar + bar * 0.1,
                bottom,
                (bar * 0.8).max(0.5),
                h,
            );
            c.fill_nonzero();
        }
        c.set_fill_rgb(0.0, 0.0, 0.0);
    }
    l.y = top;
    l.text_at(MARGIN, REGULAR, 8.0, &format!("max {max} per bucket"));
    l.y = bottom - 12.0;
    if let Some((a, b)) = stats.span {
        l.text_at(MARGIN, REGULAR, 8.0, &time_text(a));
        l.text_at(WIDTH - MARGIN - 110.0, REGULAR, 8.0, &time_text(b));
    }
    l.y -= 4.0;
    l.line(
        REGULAR,
        8.0,
        &format!(
            "Requests per {} (by creation time).",
            duration_text(stats.bucket_ms)
        ),
    );
}

/// Builds the PDF report for the requests matching `q`.
pub async fn write(
    mirror: &Mirror,
    q: &SearchQuery,
    now: Timestamp,
    control: Control<'_>,
) -> Result<Vec<u8>, ReportError> {
    let anchor: Anchor = mirror.anchor().await?;
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
    l.line(
        REGULAR,
        10.0,
        &format!("Filters: {}", clip(&filters_text(q), 90)),
    );
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

    l.heading("How agents authenticated");
    for (how, n) in &stats.authentication {
        let text = match how.as_deref() {
            Some("api_token") => "API token issued by this service".to_owned(),
            Some(other) => match other.strip_prefix("workload_token:") {
                Some(issuer) => format!("Workload identity token from {}", clip(issuer, 60)),
                None => clip(other, 70),
            },
            None => "Not recorded (requests from before it was kept)".to_owned(),
        };
        l.line(REGULAR, 10.0, &format!("{text}: {n}"));
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
    let cols = [0.0, 220.0, 300.0, 380.0];
    l.row(
        BOLD,
        &cols,
        &[
            "Approver".into(),
            "Approvals".into(),
            "Denials".into(),
            "Decisions".into(),
        ],
    );
    for a in &stats.approvers {
        l.row(
            REGULAR,
            &cols,
            &[
                clip(&a.approver_id, 40),
                a.approvals.to_string(),
                a.denials.to_string(),
                (a.approvals + a.denials).to_string(),
            ],
        );
    }

    l.heading("Per action type");
    let cols = [0.0, 220.0, 290.0, 360.0, 430.0];
    l.row(
        BOLD,
        &cols,
        &[
            "Action type".into(),
            "Requests".into(),
            "Approved".into(),
            "Denied".into(),
            "Expired".into(),
        ],
    );
    for r in &stats.types {
        l.row(
            REGULAR,
            &cols,
            &[
                clip(&r.action_type, 40),
                r.total.to_string(),
                r.approved.to_string(),
                r.denied.to_string(),
                r.expired.to_string(),
            ],
        );
    }

    l.heading(&format!(
        "Denials and expiries ({})",
        stats.exceptions_total
    ));
    let cols = [0.0, 100.0, 145.0, 255.0, 395.0];
    l.row(
        BOLD,
        &cols,
        &[
            "Created".into(),
            "Verdict".into(),
            "Action type".into(),
            "Resource".into(),
            "Requester / by".into(),
        ],
    );
    for r in &stats.exceptions {
        let by = if r.approvers.is_empty() {
            r.requester.clone()
        } else {
            format!("{} / {}", r.requester, r.approvers.join(" "))
        };
        l.row(
            REGULAR,
            &cols,
            &[
                r.created_at.to_string().chars().take(16).collect(),
                r.status.clone(),
                clip(&r.action_type, 22),
                clip(&r.resource, 28),
                clip(&by, 28),
            ],
        );
    }
    if stats.exceptions_total > stats.exceptions.len() as u64 {
        l.line(
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
    fn text_outside_windows_1252_becomes_a_question_mark() {
        assert_eq!(win_ansi("café ✓"), b"caf\xe9 ?".to_vec());
    }
}
