//! The Microsoft Teams payload: a message with one Adaptive Card, as Teams incoming webhooks
//! and workflows take it. Agent text is shown escaped (hidden characters) and with Markdown's
//! characters backslash-escaped, so it cannot format or link.

use countersign_core::text::escape_for_display;
use serde_json::{Value, json};

use super::Notice;
use super::slack::{facts, title};

/// Agent text made inert for the card's Markdown subset.
fn inert(text: &str) -> String {
    let shown = escape_for_display(text, true);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        if "\\`*_{}[]()<>#+-.!|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message for a Teams incoming webhook.
pub fn payload(notice: &Notice) -> Value {
    let facts: Vec<Value> = facts(notice)
        .into_iter()
        .map(|(label, value)| json!({ "title": label, "value": inert(&value) }))
        .collect();
    let link = notice.open_url.as_deref().unwrap_or(&notice.link);
    let card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            { "type": "TextBlock", "text": inert(&title(notice)), "weight": "Bolder", "size": "Medium", "wrap": true },
            { "type": "FactSet", "facts": facts },
            { "type": "TextBlock", "text": "Decide in the Countersign console: decisions are signed on your device, never in chat.", "isSubtle": true, "wrap": true },
        ],
        "actions": [
            { "type": "Action.OpenUrl", "title": "Open in Countersign", "url": link },
        ],
    });
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}
