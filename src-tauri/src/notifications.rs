//! Desktop notifications for requests I may decide: what the request is, who asks, where, its
//! tags and time left; Approve only when the policy allowed quick approval, Deny and Review
//! otherwise. Bursts are grouped into one notification; snoozing silences them for a while
//! (the inbox keeps everything). A request still waiting shortly before it expires gets one
//! reminder.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use countersign_core::api::ActionView;
use countersign_core::{PolicyOutcome, RiskLevel, Timestamp};

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

/// Agent-written text as a notification shows it: hazardous characters as visible escapes
/// (a U+202E would reverse the resource on screen), and `&`, `<`, `>` as entities, since
/// notification servers may read the body as markup.
fn shown(text: &str) -> String {
    countersign_core::text::escape_for_display(text, false)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The notification for one request.
pub fn content(view: &ActionView, now: Timestamp) -> Content {
    let request = &view.action.request;
    let mut who = shown(&view.action.requester);
    if let Some(principal) = &request.on_behalf_of {
        who.push_str(&format!(" for {}", shown(principal)));
    }
    // The policy's risk, in words, first: what the action does, not what the agent says.
    let mut body = match &view.action.policy.risk {
        Some(risk) if risk.reasons.is_empty() => {
            format!("{} risk\n", capitalised(risk.level.label()))
        }
        Some(risk) => format!(
            "{} risk: {}\n",
            capitalised(risk.level.label()),
            shown(&risk.reasons.join("; "))
        ),
        None => String::new(),
    };
    body.push_str(&format!("{who} · {}", shown(&request.environment)));
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
    // Review is the notification's default action (see `show`), not a second button.
    let mut actions = Vec::new();
    if quick {
        actions.push(("approve", "Approve"));
    }
    actions.push(("deny", "Deny"));
    // High and critical risk lead the title, where a glance lands.
    let alarm = match &view.action.policy.risk {
        Some(risk) if risk.level >= RiskLevel::High => {
            format!("{} risk · ", capitalised(risk.level.label()))
        }
        _ => String::new(),
    };
    Content {
        summary: format!(
            "{alarm}{} · {}",
            request.action_type,
            shown(&request.resource)
        ),
        body,
        actions,
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The notice of a break-glass use waiting for this approver's review: granted without
/// approval, it asks for a look at what was done. No buttons beyond Review: a review is signed
/// in the window, after reading it.
pub fn break_glass(view: &ActionView) -> Content {
    let request = &view.action.request;
    Content {
        summary: format!(
            "BREAK-GLASS used: {} on {}",
            shown(request.action_type.as_str()),
            shown(&request.resource)
        ),
        body: format!(
            "{} acted without approval in {}: {}\nReview what was done.",
            shown(&view.action.requester),
            shown(&request.environment),
            shown(&view.action.policy.reason)
        ),
        actions: Vec::new(),
    }
}

/// How often the console asks for break-glass uses waiting for its review.
pub const REVIEW_CHECK: Duration = Duration::from_secs(5);

/// The reminder for a request about to expire: the same facts and buttons, the time first.
pub fn reminder(view: &ActionView, now: Timestamp) -> Content {
    let first = content(view, now);
    Content {
        summary: format!(
            "Expires in {} · {}",
            time_left(view.action.expires_at.millis_since(now)),
            first.summary
        ),
        ..first
    }
}

/// At most this long before expiry a waiting request is recalled.
pub const REMIND_BEFORE: Duration = Duration::from_secs(120);

/// How often the console looks for requests due a reminder.
pub const REMINDER_CHECK: Duration = Duration::from_secs(5);

/// Which of `view`'s reminders is due at `now`, if one is. When its policy plans reminders
/// (`remind_before_seconds`), each point is one reminder, named by its seconds (the latest
/// point passed). Otherwise one reminder (named 0): time left is under [`REMIND_BEFORE`] and
/// under a quarter of its whole lifetime (a five-minute request is recalled with 75 s left,
/// not 2 minutes after it arrived). None once expired; requests so short that the default
/// window is under two checks (under 40 s) get none: their arrival already said how little
/// time there is.
pub fn reminder_due(view: &ActionView, now: Timestamp) -> Option<u32> {
    let left = view.action.expires_at.millis_since(now);
    if left <= 0 {
        return None;
    }
    if let PolicyOutcome::RequireApproval {
        remind_before_seconds,
        ..
    } = &view.action.policy.outcome
        && !remind_before_seconds.is_empty()
    {
        return remind_before_seconds
            .iter()
            .filter(|p| left <= i64::from(**p) * 1000)
            .min()
            .copied();
    }
    let lifetime = view.action.expires_at.millis_since(view.action.created_at);
    let window = (lifetime / 4).min(REMIND_BEFORE.as_millis() as i64);
    (window >= 2 * REMINDER_CHECK.as_millis() as i64 && left <= window).then_some(0)
}

/// The grouped notification for a burst.
pub fn burst(count: usize) -> Content {
    Content {
        summary: format!("{count} new requests need your decision"),
        body: "Open Countersign to review them one by one.".into(),
        actions: vec![],
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
    /// Reminders given: the request and which of its reminders ([`reminder_due`]).
    reminded: HashSet<(uuid::Uuid, u32)>,
    /// The notifications on screen per request (the grouped one under the nil id), to close
    /// when they stop being true.
    on_screen: HashMap<uuid::Uuid, Vec<u32>>,
    /// The "offline" notification, while the console is offline.
    offline: Option<u32>,
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

    /// Remembers that notification `id` is on screen about `request` (`None`: the grouped one).
    pub fn on_screen(&self, request: Option<uuid::Uuid>, id: u32) {
        self.lock()
            .on_screen
            .entry(request.unwrap_or_else(uuid::Uuid::nil))
            .or_default()
            .push(id);
    }

    /// The notifications no longer true now that `waiting` is what waits: those of requests
    /// that left it (decided here or elsewhere, expired, withdrawn), and the grouped one once
    /// nothing waits. They are forgotten here; the caller closes them.
    pub fn stale(&self, waiting: &[ActionView]) -> Vec<u32> {
        let mut state = self.lock();
        let mut gone = Vec::new();
        state.on_screen.retain(|request, ids| {
            let still = if request.is_nil() {
                !waiting.is_empty()
            } else {
                waiting.iter().any(|v| v.id == *request)
            };
            if !still {
                gone.append(ids);
            }
            still
        });
        gone
    }

    /// Whether the console just went offline (true once per outage), noting the notification
    /// that says so.
    pub fn went_offline(&self) -> bool {
        self.lock().offline.is_none()
    }

    /// Remembers the "offline" notification.
    pub fn offline_shown(&self, id: u32) {
        self.lock().offline = Some(id);
    }

    /// Back online: the "offline" notification to close, if one was shown.
    pub fn back_online(&self) -> Option<u32> {
        self.lock().offline.take()
    }

    /// The requests of `inbox` to recall now, each once (requests that left the inbox are
    /// forgotten). While snoozed nothing is recalled, and what fell due meanwhile is not
    /// recalled later either: the snooze asked for quiet.
    pub fn reminders<'a>(&self, inbox: &'a [ActionView], now: Timestamp) -> Vec<&'a ActionView> {
        let snoozed = self.snoozed();
        let mut state = self.lock();
        state
            .reminded
            .retain(|(id, _)| inbox.iter().any(|v| v.id == *id));
        let mut due = Vec::new();
        for view in inbox {
            if let Some(point) = reminder_due(view, now)
                && state.reminded.insert((view.id, point))
                && !snoozed
            {
                due.push(view);
            }
        }
        due
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NotifierState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shows `content` and calls `pressed` (on a thread of its own) with what the person did;
/// returns the notification's id, to close it when it stops being true.
pub fn show(content: &Content, pressed: impl FnOnce(Pressed) + Send + 'static) -> Option<u32> {
    let mut notification = notify_rust::Notification::new();
    // The default action is Review: servers that draw it as a button draw one Review, and
    // clicking the notification itself reviews on the others.
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
            let id = handle.id();
            // wait_for_action blocks until the person acts or the notification closes.
            std::thread::spawn(move || {
                handle.wait_for_action(|action| pressed(Pressed::from_action(action)));
            });
            Some(id)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not show a notification");
            None
        }
    }
}

/// Shows a notification that only informs (a confirmation, the console going offline): no
/// buttons; returns its id.
pub fn inform(summary: &str, body: &str, urgent: bool) -> Option<u32> {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Countersign")
        .summary(summary)
        .body(body)
        .icon(if urgent {
            "dialog-warning"
        } else {
            "dialog-information"
        })
        .hint(notify_rust::Hint::Category("x-countersign.status".into()))
        .urgency(if urgent {
            notify_rust::Urgency::Critical
        } else {
            notify_rust::Urgency::Normal
        });
    match notification.show() {
        Ok(handle) => Some(handle.id()),
        Err(e) => {
            tracing::warn!(error = %e, "could not show a notification");
            None
        }
    }
}

/// Closes the notifications `ids` (CloseNotification on the session bus), e.g. those about a
/// request decided elsewhere, so no stale Deny button is left beside an empty inbox.
pub async fn close(ids: Vec<u32>) {
    if ids.is_empty() {
        return;
    }
    let connection = match zbus::Connection::session().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the session bus to close notifications");
            return;
        }
    };
    for id in ids {
        if let Err(e) = connection
            .call_method(
                Some("org.freedesktop.Notifications"),
                "/org/freedesktop/Notifications",
                Some("org.freedesktop.Notifications"),
                "CloseNotification",
                &(id,),
            )
            .await
        {
            tracing::debug!(error = %e, id, "closing a notification");
        }
    }
}

/// The confirmation of a decision made from a notification's button.
pub fn confirmation(
    view_type: &str,
    resource: &str,
    verdict: countersign_core::Verdict,
) -> (String, String) {
    let done = match verdict {
        countersign_core::Verdict::Approve => "Approved",
        countersign_core::Verdict::Deny => "Denied",
    };
    (
        format!("{done}: {view_type} · {}", shown(resource)),
        "Signed with your key and recorded in the audit log.".into(),
    )
}

#[cfg(test)]
mod tests {
    use countersign_core::policy::policy_hash;
    use countersign_core::{Action, ActionStatus, PolicyEvaluation};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(1_795_000_000_000 + seconds * 1000).expect("time")
    }

    /// A pending request created at 0 s that lives `ttl` seconds.
    fn pending(n: u128, ttl: i64) -> ActionView {
        let action = Action {
            id: uuid::Uuid::from_u128(n),
            requester: "agent:ci".into(),
            request: serde_json::from_value(serde_json::json!({
                "type": "k8s.deploy", "resource": "cluster/prod/web", "environment": "prod",
                "justification": "release"
            }))
            .expect("request"),
            created_at: at(0),
            expires_at: at(ttl),
            policy: PolicyEvaluation {
                outcome: PolicyOutcome::RequireApproval {
                    quorum: 1,
                    groups: vec![],
                    ttl_seconds: ttl as u32,
                    require_hardware_key: false,
                    quick_approve: false,
                    verification_code: false,
                    require_idp_enrolment: false,
                    max_sign_in_age_seconds: None,
                    require_attested_key: false,
                    escalation: Vec::new(),
                    remind_before_seconds: Vec::new(),
                },
                reason: "deploys need a human".into(),
                policy_hash: policy_hash(b"p"),
                risk: None,
            },
        };
        ActionView {
            id: action.id,
            status: ActionStatus::Pending,
            digest: action.digest().expect("digest"),
            quorum: 1,
            approvals: 0,
            action,
            decisions: vec![],
            grant: None,
            outcome: None,
            verification_code: None,
            verification_choices: None,
            summary: true,
        }
    }

    /// A resource stored before intake refused it (or from an older service) cannot reverse
    /// itself on screen or inject markup into the notification.
    #[test]
    fn hostile_text_is_shown_escaped_in_the_notification() {
        let mut view = pending(1, 600);
        view.action.request.resource = "s3://b/invoice\u{202E}fdp.exe".into();
        view.action.requester = "agent:<b>ci</b>".into();
        let c = content(&view, at(0));
        assert!(
            c.summary.ends_with("invoice\\u{202E}fdp.exe"),
            "{}",
            c.summary
        );
        assert!(!c.summary.contains('\u{202E}'));
        assert!(
            c.body.starts_with("agent:&lt;b&gt;ci&lt;/b&gt;"),
            "{}",
            c.body
        );
    }

    /// The policy's risk leads: words for every level in the body, the level in the title when
    /// it is high or critical; no risk judged, no risk line.
    #[test]
    fn the_policys_risk_is_said_in_words_first() {
        let mut view = pending(1, 600);
        view.action.policy.risk = Some(countersign_core::Risk {
            level: RiskLevel::Critical,
            reasons: vec![
                "opens a network range to the whole internet (0.0.0.0/0 or ::/0)".into(),
                "runs in production".into(),
            ],
        });
        let c = content(&view, at(0));
        assert!(
            c.summary.starts_with("Critical risk · k8s.deploy"),
            "{}",
            c.summary
        );
        assert!(
            c.body.starts_with(
                "Critical risk: opens a network range to the whole internet (0.0.0.0/0 or ::/0); runs in production\n"
            ),
            "{}",
            c.body
        );
        view.action.policy.risk = Some(countersign_core::Risk {
            level: RiskLevel::Medium,
            reasons: vec!["runs in production".into()],
        });
        let c = content(&view, at(0));
        assert!(c.summary.starts_with("k8s.deploy"), "{}", c.summary);
        assert!(
            c.body.starts_with("Medium risk: runs in production\n"),
            "{}",
            c.body
        );
        view.action.policy.risk = None;
        assert!(content(&view, at(0)).body.starts_with("agent:ci"));
    }

    #[test]
    fn reminder_comes_shortly_before_expiry_and_only_once() {
        let notifier = Notifier::default();
        let inbox = vec![pending(1, 3600), pending(2, 300)];
        // An hour-long request: nothing until 2 minutes are left.
        assert!(
            notifier
                .reminders(&inbox, at(3479))
                .iter()
                .all(|v| v.id != inbox[0].id)
        );
        let due = notifier.reminders(&inbox, at(3480));
        assert_eq!(
            due.iter().map(|v| v.id).collect::<Vec<_>>(),
            vec![inbox[0].id]
        );
        assert!(notifier.reminders(&inbox, at(3500)).is_empty(), "once only");
        // A five-minute request: a quarter of its life, 75 s, not 2 minutes.
        let fresh = Notifier::default();
        assert!(fresh.reminders(&inbox[1..], at(224)).is_empty());
        assert_eq!(fresh.reminders(&inbox[1..], at(225)).len(), 1);
        // Expired: no reminder.
        let late = Notifier::default();
        assert!(late.reminders(&inbox[1..], at(300)).is_empty());
        // Thirty seconds: too short to recall.
        let short = vec![pending(5, 30)];
        assert!((0..30).all(|t| Notifier::default().reminders(&short, at(t)).is_empty()));
    }

    #[test]
    fn the_policys_reminder_points_each_recall_once() {
        let notifier = Notifier::default();
        let mut view = pending(7, 600);
        if let PolicyOutcome::RequireApproval {
            remind_before_seconds,
            ..
        } = &mut view.action.policy.outcome
        {
            *remind_before_seconds = vec![300, 60];
        }
        let inbox = vec![view];
        assert!(notifier.reminders(&inbox, at(299)).is_empty());
        assert_eq!(
            notifier.reminders(&inbox, at(300)).len(),
            1,
            "5 minutes left"
        );
        assert!(
            notifier.reminders(&inbox, at(400)).is_empty(),
            "that point once"
        );
        assert_eq!(
            notifier.reminders(&inbox, at(540)).len(),
            1,
            "1 minute left"
        );
        assert!(notifier.reminders(&inbox, at(590)).is_empty());
        assert!(notifier.reminders(&inbox, at(600)).is_empty(), "expired");
    }

    #[test]
    fn reminder_reads_time_first_and_keeps_the_buttons() {
        let view = pending(3, 300);
        let content = reminder(&view, at(255));
        assert_eq!(
            content.summary,
            "Expires in 45 s · k8s.deploy · cluster/prod/web"
        );
        assert_eq!(content.actions, super::content(&view, at(255)).actions);
    }

    #[test]
    fn snoozed_reminders_stay_quiet() {
        let notifier = Notifier::default();
        let inbox = vec![pending(4, 300)];
        notifier.snooze(10);
        assert!(notifier.reminders(&inbox, at(250)).is_empty());
        notifier.snooze(0);
        assert!(
            notifier.reminders(&inbox, at(260)).is_empty(),
            "fell due while snoozed"
        );
        // A request that left the inbox and came back is a new one to recall.
        assert!(notifier.reminders(&[], at(261)).is_empty());
        assert_eq!(notifier.reminders(&inbox, at(262)).len(), 1);
    }

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
