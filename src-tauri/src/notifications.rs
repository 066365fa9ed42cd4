//! Desktop notifications for requests I may decide: what the request is, who asks, where, its
//! tags and time left; Approve only when the policy allowed quick approval, Deny and Review
//! otherwise. Bursts are grouped into one notification; snoozing silences them for a while
//! (the inbox keeps everything).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use countersign_core::api::ActionView;
use countersign_core::{PolicyOutcome, Timestamp};

/// What a notification shows and offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// The title: action and resource.
    pub summary: String,
    /// Requester (and on-behalf-of), environment, tags, time left.
    pub body: String,
    /// `(id, label)` of the buttons, in order.
    pub actions: Vec<(&'static str, &'static str)>,
}

/// The button a person pressed (or a click on the notification itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressed {
    /// Approve without opening the request (only offered for quick-approve requests).
    Approve,
    /// Deny.
    Deny,
    /// Open the request.
    Review,
    /// Dismissed or closed.
    Dismissed,
}

impl Pressed {
    /// Maps a notification action id.
    pub fn from_action(action: &str) -> Self {
        match action {
            "approve" => Pressed::Approve,
            "deny" => Pressed::Deny,
            "review" | "default" => Pressed::Review,
            _ => Pressed::Dismissed,
        }
    }
}

/// The notification for one request.
pub fn content(view: &ActionView, now: Timestamp) -> Content {
    let request = &view.action.request;
    let mut who = view.action.requester.clone();
    if let Some(principal) = &request.on_behalf_of {
        who.push_str(&format!(" for {principal}"));
    }
    let tags: Vec<&str> = request.tags.iter().map(|t| t.as_str()).collect();
    let mut body = format!("{who} · {}", request.environment);
    if !tags.is_empty() {
        body.push_str(&format!(" · {}", tags.join(", ")));
    }
    body.push_str(&format!(
        " · {} left",
        time_left(view.action.expires_at.millis_since(now))
    ));
    let quick = matches!(
        view.action.policy.outcome,
        PolicyOutcome::RequireApproval {
            quick_approve: true,
            ..
        }
    );
    let mut actions = Vec::new();
    if quick {
        actions.push(("approve", "Approve"));
    }
    actions.push(("deny", "Deny"));
    actions.push(("review", "Review"));
    Content {
        summary: format!("{} · {}", request.action_type, request.resource),
        body,
        actions,
    }
}

/// The grouped notification for a burst.
pub fn burst(count: usize) -> Content {
    Content {
        summary: format!("{count} new requests need your decision"),
        body: "Open Countersign to review them one by one.".into(),
        actions: vec![("review", "Review")],
    }
}

/// "14 min", "45 s", "expired".
pub fn time_left(millis: i64) -> String {
    match millis {
        m if m <= 0 => "expired".into(),
        m if m < 60_000 => format!("{} s", m / 1000),
        m if m < 3_600_000 => format!("{} min", m / 60_000),
        m => format!("{} h {} min", m / 3_600_000, (m % 3_600_000) / 60_000),
    }
}

/// Rate and snooze state: more than [`BURST`] arrivals within [`BURST_WINDOW`] are grouped.
pub struct Notifier {
    state: Mutex<NotifierState>,
}

#[derive(Default)]
struct NotifierState {
    snoozed_until: Option<Instant>,
    recent: Vec<Instant>,
    grouped_at: Option<Instant>,
}

/// Arrivals within the window beyond which notifications are grouped.
pub const BURST: usize = 3;
/// The burst window.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);

/// What to do with an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Show it on its own.
    Single,
    /// Show (or refresh) one grouped notification for `count` requests.
    Grouped(usize),
    /// Snoozed or already grouped: stay quiet.
    Quiet,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            state: Mutex::new(NotifierState::default()),
        }
    }
}

impl Notifier {
    /// Silences notifications for `minutes`; 0 ends the snooze.
    pub fn snooze(&self, minutes: u32) {
        let mut state = self.lock();
        state.snoozed_until =
            (minutes > 0).then(|| Instant::now() + Duration::from_secs(u64::from(minutes) * 60));
    }

    /// Whether notifications are snoozed now.
    pub fn snoozed(&self) -> bool {
        self.lock()
            .snoozed_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Decides how to show an arrival at `now`.
    pub fn arrival(&self, now: Instant) -> Decision {
        let mut state = self.lock();
        if state.snoozed_until.is_some_and(|until| now < until) {
            return Decision::Quiet;
        }
        state
            .recent
            .retain(|t| now.saturating_duration_since(*t) < BURST_WINDOW);
        state.recent.push(now);
        let count = state.recent.len();
        if count <= BURST {
            return Decision::Single;
        }
        // One grouped notification per window, refreshed at most once a second.
        match state.grouped_at {
            Some(at) if now.saturating_duration_since(at) < Duration::from_secs(1) => {
                Decision::Quiet
            }
            _ => {
                state.grouped_at = Some(now);
                Decision::Grouped(count)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NotifierState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shows `content` and calls `pressed` (on a thread of its own) with what the person did.
pub fn show(content: &Content, pressed: impl FnOnce(Pressed) + Send + 'static) {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Countersign")
        .summary(&content.summary)
        .body(&content.body)
        .icon("dialog-password")
        .hint(notify_rust::Hint::Category("x-countersign.request".into()))
        .action("default", "Review");
    for (id, label) in &content.actions {
        notification.action(id, label);
    }
    match notification.show() {
        Ok(handle) => {
            // wait_for_action blocks until the person acts or the notification closes.
            std::thread::spawn(move || {
                handle.wait_for_action(|action| pressed(Pressed::from_action(action)));
            });
        }
        Err(e) => tracing::warn!(error = %e, "could not show a notification"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_at_a_glance() {
        assert_eq!(time_left(-5), "expired");
        assert_eq!(time_left(45_000), "45 s");
        assert_eq!(time_left(14 * 60_000 + 59_000), "14 min");
        assert_eq!(time_left(3_600_000 + 5 * 60_000), "1 h 5 min");
    }

    #[test]
    fn bursts_are_grouped_and_snooze_silences() {
        let notifier = Notifier::default();
        let t0 = Instant::now();
        let decisions: Vec<Decision> = (0..6)
            .map(|i| notifier.arrival(t0 + Duration::from_millis(100 * i)))
            .collect();
        assert_eq!(
            decisions,
            vec![
                Decision::Single,
                Decision::Single,
                Decision::Single,
                Decision::Grouped(4),
                Decision::Quiet,
                Decision::Quiet
            ]
        );
        // After the window, single notifications again.
        assert_eq!(
            notifier.arrival(t0 + Duration::from_secs(30)),
            Decision::Single
        );
        notifier.snooze(10);
        assert!(notifier.snoozed());
        assert_eq!(notifier.arrival(Instant::now()), Decision::Quiet);
        notifier.snooze(0);
        assert!(!notifier.snoozed());
    }
}
