//! Sending, outside any transaction: a POST with the Standard Webhooks headers through
//! reqwest (rustls with the ring provider), or an e-mail through lettre's SMTP transport.

use crate::Error;
use crate::body::Body;
use chrono::{DateTime, Utc};
use leadflow_engine::StreamId;
use leadflow_engine::config::{Delivery, SmtpTls};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt;

/// What to send for one message.
#[derive(Debug)]
pub(crate) enum Request {
    /// A webhook.
    Post {
        url: String,
        webhook_id: String,
        secret: Option<String>,
        body: Body,
    },
    /// An e-mail.
    Mail {
        to: String,
        message_id: String,
        text: String,
        stream: StreamId,
    },
    /// Nothing can be sent (the message cannot be built): the attempt fails with this.
    Broken(String),
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// A 2xx answer (or the relay took the mail).
    Delivered { status: Option<u16> },
    /// 410 Gone: the receiver wants no more.
    Gone,
    /// Anything else: retried.
    Failed { status: Option<u16>, error: String },
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sent::Delivered { .. } => f.write_str("delivered"),
            Sent::Gone => f.write_str("410 Gone"),
            Sent::Failed { error, .. } => f.write_str(error),
        }
    }
}

/// The HTTP client and the SMTP transport.
pub(crate) struct Sender {
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Sender {
    pub(crate) fn new(d: &Delivery) -> Result<Sender, Error> {
        // reqwest is built without a crypto provider of its own: rustls takes the process's
        // default, ring (installing fails only if one is installed already, which is fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(d.timeout)
            .connect_timeout(d.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("leadflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let smtp = match &d.smtp {
            None => None,
            Some(s) => {
                let builder = match s.tls {
                    SmtpTls::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    }
                    SmtpTls::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                            .map_err(|e| Error::Smtp(e.to_string()))?
                    }
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                        .map_err(|e| Error::Smtp(e.to_string()))?,
                };
                let mut builder = builder.port(s.port).timeout(Some(d.timeout));
                if let (Some(u), Some(p)) = (&s.user, &s.password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                let from: Mailbox = s
                    .from
                    .parse()
                    .map_err(|e| Error::Smtp(format!("from '{}': {e}", s.from)))?;
                Some((builder.build(), from))
            }
        };
        Ok(Sender { http, smtp })
    }

    /// Makes one attempt.
    pub(crate) async fn send(&self, r: &Request, now: DateTime<Utc>) -> Sent {
        match r {
            Request::Broken(m) => Sent::Failed {
                status: None,
                error: m.clone(),
            },
            Request::Post {
                url,
                webhook_id,
                secret,
                body,
            } => {
                let timestamp = now.timestamp();
                let mut req = self
                    .http
                    .post(url)
                    .header("content-type", body.content_type)
                    .header("webhook-id", webhook_id)
                    .header("webhook-timestamp", timestamp.to_string());
                if let Some(secret) = secret {
                    req = req.header(
                        "webhook-signature",
                        crate::sign::signature(secret, webhook_id, timestamp, &body.bytes),
                    );
                }
                match req.body(body.bytes.clone()).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        if resp.status().is_success() {
                            Sent::Delivered {
                                status: Some(status),
                            }
                        } else if status == 410 {
                            Sent::Gone
                        } else {
                            Sent::Failed {
                                status: Some(status),
                                error: format!("the receiver answered {}", resp.status()),
                            }
                        }
                    }
                    Err(e) => Sent::Failed {
                        status: None,
                        error: describe(&e),
                    },
                }
            }
            Request::Mail {
                to,
                message_id,
                text,
                stream,
            } => {
                let Some((transport, from)) = &self.smtp else {
                    return Sent::Failed {
                        status: None,
                        error: "no mail relay: set [delivery.smtp] in the configuration".into(),
                    };
                };
                let to: Mailbox = match to.parse() {
                    Ok(m) => m,
                    Err(e) => {
                        return Sent::Failed {
                            status: None,
                            error: format!("bad address '{to}': {e}"),
                        };
                    }
                };
                let first = text.lines().next().unwrap_or("").trim();
                let mut subject: String = first.chars().take(70).collect();
                if subject.len() < first.len() {
                    subject.push('…');
                }
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(format!("leadflow: {subject}"))
                    .message_id(Some(format!("<{message_id}@leadflow>")))
                    .header(ContentType::TEXT_PLAIN)
                    .body(format!("{text}\n\n-- \nleadflow, {stream}\n"));
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        return Sent::Failed {
                            status: None,
                            error: format!("cannot build the e-mail: {e}"),
                        };
                    }
                };
                match transport.send(message).await {
                    Ok(_) => Sent::Delivered { status: None },
                    Err(e) => Sent::Failed {
                        status: None,
                        error: format!("the mail relay: {e}"),
                    },
                }
            }
        }
    }
}

/// A reqwest error with its causes, on one line.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    let mut s = format!("the request {what}");
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
