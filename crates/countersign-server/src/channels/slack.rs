//! The Slack incoming-webhook payload: Block Kit blocks and a plain-text fallback. Everything
//! the agent wrote goes into `plain_text` objects, so it cannot mention `@channel`, link or
//! format; hidden characters are shown escaped. The only `mrkdwn` is the service's own link.

use countersign_core::text::escape_for_display;
use serde_json::{Value, json};

use super::Notice;

/// Slack's limit on a header's text.
const HEADER_CHARS: usize = 150;
/// Slack's limit on a field's text (we stay well under it).
const FIELD_CHARS: usize = 1_900;

fn plain(text: &str, limit: usize) -> Value {
    let shown: String = escape_for_display(text, true).chars().take(limit).collect();
    json!({ "type": "plain_text", "text": shown, "emoji": false })
}

/// Facts as `(label, value)` pairs, shared with the Teams card.
pub(super) fn facts(notice: &Notice) -> Vec<(&'static str, String)> {
    let mut facts = Vec::new();
    if notice.break_glass {
        facts.push((
            "BREAK-GLASS",
            "granted without approval; it must be reviewed".to_owned(),
        ));
    }
    facts.extend([
        ("Action", notice.action_type.clone()),
        ("Resource", notice.resource.clone()),
        ("Environment", notice.environment.clone()),
        ("Requested by", notice.requester.clone()),
    ]);
    if let Some(person) = &notice.on_behalf_of {
        facts.push(("On behalf of", person.clone()));
    }
    if let Some(risk) = &notice.risk {
        let mut text = risk.level.label().to_owned();
        if !risk.reasons.is_empty() {
            text.push_str(": ");
            text.push_str(&risk.reasons.join("; "));
        }
        facts.push(("Risk", text));
    }
    if let Some(quorum) = notice.quorum {
        let from = if notice.groups.is_empty() {
            "any approver".to_owned()
        } else {
            notice.groups.join(", ")
        };
        let what = if notice.break_glass {
            "review(s), after the fact,"
        } else {
            "approval(s)"
        };
        facts.push(("Needs", format!("{quorum} {what} from {from}")));
    }
    facts.push(("Expires", notice.expires_at.to_string()));
    if let Some(reason) = &notice.reason {
        facts.push(("Reason", reason.clone()));
    }
    facts.push(("Justification", notice.justification.clone()));
    facts.push(("Request", notice.request_id.to_string()));
    facts
}

/// The one-line summary, also the notification text on phones.
pub(super) fn title(notice: &Notice) -> String {
    format!(
        "{} on {} {}",
        notice.action_type,
        notice.environment,
        notice.kind.headline()
    )
}

/// The message for a Slack incoming webhook.
pub fn payload(notice: &Notice) -> Value {
    let fields: Vec<Value> = facts(notice)
        .into_iter()
        .map(|(label, value)| plain(&format!("{label}\n{value}"), FIELD_CHARS))
        .collect();
    let link = notice.open_url.as_deref().unwrap_or(&notice.link);
    let mut blocks = vec![json!({ "type": "header", "text": plain(&title(notice), HEADER_CHARS) })];
    // A section holds at most 10 fields.
    for chunk in fields.chunks(10) {
        blocks.push(json!({ "type": "section", "fields": chunk }));
    }
    if notice.open_url.is_some() {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "action_id": "open_in_countersign",
                "text": plain("Open in Countersign", 75),
                "url": link,
            }],
        }));
    } else {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("<{link}|Open in Countersign>") },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [plain("Decide in the Countersign console: decisions are signed on your device, never in chat.", 300)],
    }));
    json!({
        "text": escape_for_display(&title(notice), false),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}
