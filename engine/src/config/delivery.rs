//! The `[delivery]` section: how the outbox and the webhook subscriptions are delivered
//! (timeout, bounds, backoff, the rule webhooks' secret) and `[delivery.smtp]`, the mail relay.

use super::load::Loader;
use crate::diag::FileIndex;
use crate::time::parse_duration;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// How messages are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// How long one attempt may take (connect, send, answer).
    pub timeout: Duration,
    /// Attempts before a message is given up on (`delivery.failed`).
    pub max_attempts: u32,
    /// How long after it was queued a message is given up on.
    pub max_age: Duration,
    /// The first retry's wait; each next one doubles it (with jitter), up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// The secret that signs the `webhook` robot's and `notify`'s webhooks (Standard
    /// Webhooks, `whsec_`…); without it they go unsigned.
    pub secret: Option<String>,
    /// The mail relay for e-mail notifications; without it e-mails fail (and retry).
    pub smtp: Option<Smtp>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            secret: None,
            smtp: None,
        }
    }
}

/// How the mail relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// SMTP upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// SMTP inside TLS from the start (port 465).
    Tls,
}

/// The SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// The sender address (`From:`).
    pub from: String,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<i64>>,
    max_age: Option<Spanned<String>>,
    backoff_base: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    smtp: Option<Spanned<RawSmtp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Spanned<String>,
    port: Option<Spanned<i64>>,
    from: Spanned<String>,
    tls: Option<Spanned<String>>,
    user: Option<String>,
    password: Option<String>,
}

impl Loader {
    /// `[delivery]`: every value checked, every problem with its place.
    pub(super) fn delivery(&mut self, src: &FileIndex<'_>, raw: RawDelivery) -> Delivery {
        let mut d = Delivery::default();
        let duration =
            |this: &mut Self, v: &Option<Spanned<String>>, key: &str, into: &mut Duration| {
                let Some(v) = v else { return };
                match parse_duration(v.get_ref()).map(|d| d.to_std()) {
                    Ok(Ok(t)) if !t.is_zero() => *into = t,
                    Ok(_) => this.err(
                        src,
                        v.span(),
                        format!("delivery.{key} must be longer than 0s"),
                    ),
                    Err(m) => this.err(src, v.span(), format!("delivery.{key}: {m}")),
                }
            };
        duration(self, &raw.timeout, "timeout", &mut d.timeout);
        duration(self, &raw.max_age, "max_age", &mut d.max_age);
        duration(self, &raw.backoff_base, "backoff_base", &mut d.backoff_base);
        duration(self, &raw.backoff_max, "backoff_max", &mut d.backoff_max);
        if d.backoff_max < d.backoff_base
            && let Some(v) = raw.backoff_max.as_ref().or(raw.backoff_base.as_ref())
        {
            self.err(
                src,
                v.span(),
                "delivery.backoff_max is shorter than delivery.backoff_base",
            );
        }
        if let Some(n) = &raw.max_attempts {
            match u32::try_from(*n.get_ref()) {
                Ok(n @ 1..=1000) => d.max_attempts = n,
                _ => self.err(
                    src,
                    n.span(),
                    format!(
                        "delivery.max_attempts must be between 1 and 1000, not {}",
                        n.get_ref()
                    ),
                ),
            }
        }
        if let Some(s) = &raw.secret {
            let text = s.get_ref();
            if text.len() < 16 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.err(
                    src,
                    s.span(),
                    "delivery.secret must be at least 16 characters without spaces (e.g. whsec_ and base64)",
                );
            } else {
                d.secret = Some(text.clone());
            }
        }
        if let Some(smtp) = raw.smtp {
            d.smtp = Some(self.smtp(src, smtp.into_inner()));
        }
        d
    }

    fn smtp(&mut self, src: &FileIndex<'_>, raw: RawSmtp) -> Smtp {
        let host = raw.host.get_ref().trim().to_owned();
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            self.err(
                src,
                raw.host.span(),
                "delivery.smtp.host must be a host name or address",
            );
        }
        let tls = match raw.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
            None => SmtpTls::default(),
            Some(("none", _)) => SmtpTls::None,
            Some(("starttls", _)) => SmtpTls::Starttls,
            Some(("tls", _)) => SmtpTls::Tls,
            Some((other, span)) => {
                self.err(
                    src,
                    span,
                    format!("unknown delivery.smtp.tls '{other}': expected none, starttls or tls"),
                );
                SmtpTls::default()
            }
        };
        let port = match &raw.port {
            None => match tls {
                SmtpTls::None => 25,
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
            },
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(p @ 1..) => p,
                _ => {
                    self.err(
                        src,
                        p.span(),
                        format!("delivery.smtp.port {} is not a port (1-65535)", p.get_ref()),
                    );
                    25
                }
            },
        };
        let from = raw.from.get_ref().trim().to_owned();
        if crate::field::normalize_email(&from).is_err() {
            self.err(
                src,
                raw.from.span(),
                format!("delivery.smtp.from '{from}' is not an e-mail address"),
            );
        }
        if raw.user.is_some() != raw.password.is_some() {
            self.err(
                src,
                raw.host.span(),
                "delivery.smtp needs both user and password, or neither",
            );
        }
        Smtp {
            host,
            port,
            from,
            tls,
            user: raw.user,
            password: raw.password,
        }
    }
}
