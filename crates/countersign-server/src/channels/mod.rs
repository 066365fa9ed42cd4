//! Outbound notice channels: a signed webhook (Standard Webhooks), Slack and Microsoft Teams
//! incoming webhooks. They carry the notice and a link that opens the request in the desktop
//! console, where it is decided and signed; chat never decides (docs/channels.md).
//!
//! Every replica follows the audit log into the store's outbox ([`delivery::enqueue`]): the
//! outbox's position moves once, so each event's notice is queued once per channel whichever
//! replica read it. Senders on every replica claim due notices under a lease and retry failed
//! ones with exponential backoff until they give up and mark them dead.

pub mod delivery;
pub mod notice;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::collections::HashSet;

use serde::Deserialize;

pub use notice::{Notice, NoticeKind};

/// What a channel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// JSON signed per the Standard Webhooks specification.
    Webhook,
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// A Microsoft Teams incoming webhook or workflow (Adaptive Card).
    Teams,
}

/// One channel, as configured (`[[channels.channel]]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Its name in logs, the outbox and `admin channels`.
    pub name: String,
    /// What it is.
    pub kind: ChannelKind,
    /// Where notices are POSTed.
    pub url: String,
    /// The webhook's signing secret, `whsec_` and base64 (webhooks only).
    #[serde(default)]
    pub secret: Option<String>,
    /// Which notices it gets (`request.waiting`, ...); all when empty.
    #[serde(default)]
    pub events: Vec<NoticeKind>,
    /// Include the action's parameters (names that look sensitive are redacted).
    #[serde(default)]
    pub include_parameters: bool,
    /// More parameter names to redact, exactly (case-insensitive).
    #[serde(default)]
    pub sensitive_parameters: Vec<String>,
    /// Include the diff.
    #[serde(default)]
    pub include_diff: bool,
    /// Only requests from these agents; all when empty. An agent's own webhook: its
    /// requests' updates as they happen, without polling.
    #[serde(default)]
    pub requesters: Vec<String>,
    /// Whom the notices are for: `on_behalf_of` takes only requests made for a person and
    /// names that person as the notice's `recipient`, for a gateway that reaches them (mail,
    /// chat direct messages).
    #[serde(default)]
    pub recipient: Option<Recipient>,
}

/// Whom a channel's notices are addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The person a request acts for (`on_behalf_of`).
    OnBehalfOf,
}

impl ChannelConfig {
    /// Whether this channel gets notices of `kind`.
    pub fn wants(&self, kind: NoticeKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }

    /// Whether this channel takes notices about `action` at all (its requester and
    /// recipient filters).
    pub fn takes(&self, action: &countersign_core::Action) -> bool {
        let from_listed = self.requesters.is_empty()
            || self
                .requesters
                .iter()
                .any(|r| countersign_core::identifier::same(r, &action.requester));
        let addressed = match self.recipient {
            None => true,
            Some(Recipient::OnBehalfOf) => action.request.on_behalf_of.is_some(),
        };
        from_listed && addressed
    }
}

/// The channels and how deliveries are retried (`[channels]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The service's address as people reach it (`https://countersign.example`): notices then
    /// carry `<public_url>/open/<id>`, which sends the browser on to the console's link.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The channels.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// The wait before the first retry, in milliseconds; it doubles each time.
    #[serde(default = "default_first_retry_ms")]
    pub first_retry_ms: u64,
    /// The longest wait between retries, in milliseconds.
    #[serde(default = "default_max_retry_ms")]
    pub max_retry_ms: u64,
    /// Attempts before a notice is marked dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one attempt may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Days delivered notices are kept in the outbox (a record of what was sent) before
    /// they are deleted; dead ones are kept until an operator sends them again.
    #[serde(default = "default_keep_delivered_days")]
    pub keep_delivered_days: u32,
}

fn default_first_retry_ms() -> u64 {
    5_000
}
fn default_max_retry_ms() -> u64 {
    3_600_000
}
fn default_max_attempts() -> u32 {
    10
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_keep_delivered_days() -> u32 {
    30
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            channels: Vec::new(),
            first_retry_ms: default_first_retry_ms(),
            max_retry_ms: default_max_retry_ms(),
            max_attempts: default_max_attempts(),
            timeout_ms: default_timeout_ms(),
            keep_delivered_days: default_keep_delivered_days(),
        }
    }
}

/// Why a channel configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelConfigError {
    /// Two channels share a name.
    #[error("two channels are named {0:?}")]
    DuplicateName(String),
    /// A name that is empty or has characters outside `a-z 0-9 - _ .`.
    #[error("channel name {0:?}: use letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// The URL does not parse or is not http(s).
    #[error("channel {0:?}: url must be an http:// or https:// URL")]
    BadUrl(String),
    /// A webhook without a usable secret, or a secret where none is used.
    #[error("channel {0:?}: {1}")]
    Secret(String, &'static str),
    /// A requester that is not an identity.
    #[error("channel {0:?}: requesters must be agent identities (no spaces or hidden characters)")]
    BadRequester(String),
    /// `public_url` does not parse.
    #[error("channels.public_url must be an http:// or https:// URL")]
    BadPublicUrl,
}

impl ChannelsConfig {
    /// Checks what serde cannot: names, URLs, secrets.
    pub fn validate(&self) -> Result<(), ChannelConfigError> {
        let http = |u: &str| {
            reqwest::Url::parse(u)
                .ok()
                .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        };
        if let Some(public) = &self.public_url
            && !http(public)
        {
            return Err(ChannelConfigError::BadPublicUrl);
        }
        let mut names = HashSet::new();
        for c in &self.channels {
            let ok = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !ok {
                return Err(ChannelConfigError::BadName(c.name.clone()));
            }
            if !names.insert(c.name.as_str()) {
                return Err(ChannelConfigError::DuplicateName(c.name.clone()));
            }
            if !http(&c.url) {
                return Err(ChannelConfigError::BadUrl(c.name.clone()));
            }
            for requester in &c.requesters {
                countersign_core::identifier::check("requesters", requester)
                    .map_err(|_| ChannelConfigError::BadRequester(c.name.clone()))?;
            }
            match (c.kind, &c.secret) {
                (ChannelKind::Webhook, None) => {
                    return Err(ChannelConfigError::Secret(
                        c.name.clone(),
                        "a webhook needs a secret (whsec_ and base64 of 24 to 64 bytes)",
                    ));
                }
                (ChannelKind::Webhook, Some(secret)) => {
                    webhook::Secret::parse(secret)
                        .map_err(|why| ChannelConfigError::Secret(c.name.clone(), why))?;
                }
                (_, Some(_)) => {
                    return Err(ChannelConfigError::Secret(
                        c.name.clone(),
                        "only webhooks are signed; Slack and Teams URLs are their own secret",
                    ));
                }
                (_, None) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ChannelsConfig {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn a_webhook_without_a_valid_secret_and_a_chat_channel_with_one_are_refused() {
        let missing =
            parse("[[channel]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"https://x.example/h\"\n");
        assert!(matches!(
            missing.validate(),
            Err(ChannelConfigError::Secret(..))
        ));
        let short = parse(
            "[[channel]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"https://x.example/h\"\nsecret = \"whsec_c2hvcnQ=\"\n",
        );
        assert!(matches!(
            short.validate(),
            Err(ChannelConfigError::Secret(..))
        ));
        let chat = parse(
            "[[channel]]\nname = \"s\"\nkind = \"slack\"\nurl = \"https://hooks.example/s\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        );
        assert!(matches!(
            chat.validate(),
            Err(ChannelConfigError::Secret(..))
        ));
    }

    #[test]
    fn names_urls_and_events_are_checked() {
        let dup = parse(
            "[[channel]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://x.example/1\"\n[[channel]]\nname = \"a\"\nkind = \"teams\"\nurl = \"https://x.example/2\"\n",
        );
        assert!(matches!(
            dup.validate(),
            Err(ChannelConfigError::DuplicateName(_))
        ));
        let name =
            parse("[[channel]]\nname = \"a b\"\nkind = \"slack\"\nurl = \"https://x.example/1\"\n");
        assert!(matches!(
            name.validate(),
            Err(ChannelConfigError::BadName(_))
        ));
        for url in ["file:///etc/passwd", "not a url", "countersign://x"] {
            let bad = parse(&format!(
                "[[channel]]\nname = \"a\"\nkind = \"slack\"\nurl = \"{url}\"\n"
            ));
            assert!(
                matches!(bad.validate(), Err(ChannelConfigError::BadUrl(_))),
                "{url}"
            );
        }
        let public = parse("public_url = \"javascript:alert(1)\"\n");
        assert!(matches!(
            public.validate(),
            Err(ChannelConfigError::BadPublicUrl)
        ));
        assert!(
            toml::from_str::<ChannelsConfig>("[[channel]]\nname = \"a\"\nkind = \"slack\"\nurl = \"https://x.example/1\"\nevents = [\"request.approved\", \"request.sent\"]\n").is_err(),
            "an unknown event name is refused"
        );
        let good = parse(
            "public_url = \"https://cs.example\"\n[[channel]]\nname = \"ops-hooks\"\nkind = \"webhook\"\nurl = \"https://x.example/1\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nevents = [\"request.waiting\"]\n",
        );
        good.validate().expect("valid");
        assert!(good.channels[0].wants(NoticeKind::Waiting));
        assert!(!good.channels[0].wants(NoticeKind::Approved));
    }

    #[test]
    fn retries_double_up_to_the_ceiling_less_some_jitter() {
        let config = ChannelsConfig {
            first_retry_ms: 1_000,
            max_retry_ms: 10_000,
            ..ChannelsConfig::default()
        };
        for (attempt, full) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 10_000),
            (40, 10_000),
        ] {
            let wait = delivery::backoff(&config, attempt);
            assert!(
                wait <= full && wait >= full - full / 5,
                "attempt {attempt}: {wait}"
            );
        }
    }
}
