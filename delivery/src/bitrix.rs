//! Bitrix24's outgoing events (BITRIX24.md §7): which stored leadflow events raise which
//! Bitrix24 event, and the form-encoded body a handler bound with `event.bind` receives —
//! keys in PHP's `http_build_query` form, only the record's id in `data[FIELDS][ID]`; the
//! handler calls `crm.<entity>.get` for the rest and checks `auth[application_token]`.
//!
//! ```text
//! event=ONCRMLEADADD&event_handler_id=707&data%5BFIELDS%5D%5BID%5D=123&ts=1742807175&auth%5Bdomain%5D=…
//! ```

use hmac::{Hmac, Mac};
use leadflow_engine::event::type_matches;
use sha2::{Digest, Sha256};

/// Every Bitrix24 event the facade serves and the stored leadflow event types that raise it:
/// `lead.created` is `ONCRMLEADADD`; a change of fields, stage or responsible is
/// `ONCRMLEADUPDATE`; a deletion `ONCRMLEADDELETE`; the same for deals, contacts and
/// companies. Bookkeeping events (deadlines, notifications, tasks…) raise none.
pub const EVENTS: &[(&str, &[&str])] = &[
    ("ONCRMLEADADD", &["lead.created"]),
    (
        "ONCRMLEADUPDATE",
        &["lead.updated", "lead.stage_changed", "lead.assigned"],
    ),
    ("ONCRMLEADDELETE", &["lead.deleted"]),
    ("ONCRMDEALADD", &["deal.created"]),
    (
        "ONCRMDEALUPDATE",
        &["deal.updated", "deal.stage_changed", "deal.assigned"],
    ),
    ("ONCRMDEALDELETE", &["deal.deleted"]),
    ("ONCRMCONTACTADD", &["contact.created"]),
    ("ONCRMCONTACTUPDATE", &["contact.updated"]),
    ("ONCRMCONTACTDELETE", &["contact.deleted"]),
    ("ONCRMCOMPANYADD", &["company.created"]),
    ("ONCRMCOMPANYUPDATE", &["company.updated"]),
    ("ONCRMCOMPANYDELETE", &["company.deleted"]),
];

/// The Bitrix24 event a stored leadflow event raises, if any.
pub fn bitrix_event(stored_type: &str) -> Option<&'static str> {
    EVENTS
        .iter()
        .find(|(_, types)| types.contains(&stored_type))
        .map(|(name, _)| *name)
}

/// The stored event types a Bitrix24 event stands for (`None`: not served). The name is
/// compared in capitals, as Bitrix24 does (`onCrmLeadAdd` is `ONCRMLEADADD`).
pub fn leadflow_types(bitrix_event: &str) -> Option<&'static [&'static str]> {
    let name = bitrix_event.to_ascii_uppercase();
    EVENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, types)| *types)
}

/// The Bitrix24 events an endpoint's patterns raise: those with a stored type one of the
/// patterns matches (an endpoint bound with `event.bind` has exactly one; `--events 'lead.*'`
/// raises the three lead events).
pub fn raised_by(patterns: &[String]) -> Vec<&'static str> {
    EVENTS
        .iter()
        .filter(|(_, types)| {
            types
                .iter()
                .any(|t| patterns.iter().any(|p| type_matches(p, t)))
        })
        .map(|(name, _)| *name)
        .collect()
}

/// Whether an endpoint's patterns get every stored type of a Bitrix24 event (so binding the
/// event for it again would add nothing); `false` for an event not served.
pub fn covers(patterns: &[String], bitrix_event: &str) -> bool {
    leadflow_types(bitrix_event).is_some_and(|types| {
        types
            .iter()
            .all(|t| patterns.iter().any(|p| type_matches(p, t)))
    })
}

/// The `auth[application_token]` of an endpoint: 32 hex digits of the HMAC-SHA256 of
/// `leadflow application_token` under its secret. Stable for the endpoint, different for
/// each, and telling nothing of the secret; `event.get` shows it to the handler's owner.
pub fn application_token(secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&crate::signing_key(secret))
        .expect("HMAC takes a key of any length");
    mac.update(b"leadflow application_token");
    hex32(&mac.finalize().into_bytes())
}

/// Where a handler reaches the server back: `auth[domain]` (`127.0.0.1:8080`), and from it
/// `auth[client_endpoint]` (`http://127.0.0.1:8080/rest/`) and `auth[member_id]` (32 hex
/// digits of the SHA-256 of the REST base: one per installation address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `auth[domain]`: host and port.
    pub domain: String,
    /// `auth[client_endpoint]`: the REST base.
    pub client_endpoint: String,
    /// `auth[member_id]`.
    pub member_id: String,
}

impl Origin {
    /// The origin of a service listening on `domain` (`host:port`) over plain HTTP.
    pub fn new(domain: &str) -> Origin {
        let client_endpoint = format!("http://{domain}/rest/");
        Origin {
            domain: domain.to_owned(),
            member_id: hex32(&Sha256::digest(client_endpoint.as_bytes())),
            client_endpoint,
        }
    }
}

fn hex32(bytes: &[u8]) -> String {
    leadflow_engine::hex(&bytes[..bytes.len().min(16)])
}

/// The `auth[…]` block of an event: where the handler reaches the server back, and the token
/// it checks the event with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// `auth[domain]`: host and port, `127.0.0.1:8080`.
    pub domain: String,
    /// `auth[client_endpoint]`: the REST base, `http://127.0.0.1:8080/rest/`.
    pub client_endpoint: String,
    /// `auth[server_endpoint]`: the OAuth server, `https://oauth.bitrix.info/rest/`.
    pub server_endpoint: String,
    /// `auth[member_id]`: the installation's id.
    pub member_id: String,
    /// `auth[application_token]`: the secret the handler compares.
    pub application_token: String,
    /// Optional `auth[access_token|expires_in|scope|status|user_id]` (application events),
    /// in that order when given.
    pub extra: Vec<(String, String)>,
}

impl Auth {
    /// The block an endpoint's events carry.
    pub fn of(origin: &Origin, secret: &str) -> Auth {
        Auth {
            domain: origin.domain.clone(),
            client_endpoint: origin.client_endpoint.clone(),
            server_endpoint: "https://oauth.bitrix.info/rest/".into(),
            member_id: origin.member_id.clone(),
            application_token: application_token(secret),
            extra: Vec::new(),
        }
    }
}

/// One outgoing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// `ONCRMLEADADD`, `ONCRMLEADUPDATE`, `ONCRMDEALADD`…
    pub name: &'a str,
    /// The subscription's id (`event_handler_id`).
    pub handler_id: i64,
    /// The record's id (`data[FIELDS][ID]`).
    pub entity_id: i64,
    /// When it happened, Unix seconds (`ts`).
    pub ts: i64,
    /// The `auth` block.
    pub auth: &'a Auth,
}

/// PHP's `urlencode`: letters, digits and `-_.` stay, a space is `+`, every other byte `%XX`.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The form-encoded body of the event.
pub fn payload(e: &Event<'_>) -> String {
    let mut pairs: Vec<(String, String)> = vec![
        ("event".into(), e.name.to_ascii_uppercase()),
        ("event_handler_id".into(), e.handler_id.to_string()),
        ("data[FIELDS][ID]".into(), e.entity_id.to_string()),
        ("ts".into(), e.ts.to_string()),
        ("auth[domain]".into(), e.auth.domain.clone()),
        (
            "auth[client_endpoint]".into(),
            e.auth.client_endpoint.clone(),
        ),
        (
            "auth[server_endpoint]".into(),
            e.auth.server_endpoint.clone(),
        ),
        ("auth[member_id]".into(), e.auth.member_id.clone()),
        (
            "auth[application_token]".into(),
            e.auth.application_token.clone(),
        ),
    ];
    for (k, v) in &e.auth.extra {
        pairs.push((format!("auth[{k}]"), v.clone()));
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_bitrix24_shape_byte_for_byte() {
        let auth = Auth {
            domain: "127.0.0.1:8080".into(),
            client_endpoint: "http://127.0.0.1:8080/rest/".into(),
            server_endpoint: "https://oauth.bitrix.info/rest/".into(),
            member_id: "a223c6b3710f85df22e9377d6c4f7553".into(),
            application_token: "51856fefc120afa4b628cc82d3935cce".into(),
            extra: Vec::new(),
        };
        let body = payload(&Event {
            name: "ONCRMLEADADD",
            handler_id: 707,
            entity_id: 123,
            ts: 1742807175,
            auth: &auth,
        });
        assert_eq!(
            body,
            "event=ONCRMLEADADD&event_handler_id=707&data%5BFIELDS%5D%5BID%5D=123&ts=1742807175&auth%5Bdomain%5D=127.0.0.1%3A8080&auth%5Bclient_endpoint%5D=http%3A%2F%2F127.0.0.1%3A8080%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bmember_id%5D=a223c6b3710f85df22e9377d6c4f7553&auth%5Bapplication_token%5D=51856fefc120afa4b628cc82d3935cce"
        );
    }

    #[test]
    fn optional_auth_fields_follow_and_spaces_are_plus() {
        let auth = Auth {
            extra: vec![("scope".into(), "crm user".into())],
            ..Auth::default()
        };
        let body = payload(&Event {
            name: "onCrmDealUpdate",
            handler_id: 1,
            entity_id: 2,
            ts: 3,
            auth: &auth,
        });
        assert!(body.starts_with("event=ONCRMDEALUPDATE&"));
        assert!(body.ends_with("&auth%5Bscope%5D=crm+user"), "{body}");
    }

    #[test]
    fn stored_events_raise_bitrix24_events_and_back() {
        assert_eq!(bitrix_event("lead.created"), Some("ONCRMLEADADD"));
        assert_eq!(bitrix_event("lead.stage_changed"), Some("ONCRMLEADUPDATE"));
        assert_eq!(bitrix_event("deal.assigned"), Some("ONCRMDEALUPDATE"));
        assert_eq!(bitrix_event("company.deleted"), Some("ONCRMCOMPANYDELETE"));
        assert_eq!(bitrix_event("lead.deadline_set"), None);
        assert_eq!(bitrix_event("task.created"), None);
        for (name, types) in EVENTS {
            assert_eq!(leadflow_types(name), Some(*types));
            assert_eq!(leadflow_types(&name.to_ascii_lowercase()), Some(*types));
            for t in *types {
                assert_eq!(bitrix_event(t), Some(*name));
            }
            let own: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            assert_eq!(raised_by(&own), vec![*name], "{name}");
        }
        assert_eq!(leadflow_types("ONCRMTASKADD"), None);
        assert_eq!(
            raised_by(&["lead.*".into()]),
            vec!["ONCRMLEADADD", "ONCRMLEADUPDATE", "ONCRMLEADDELETE"]
        );
        assert_eq!(raised_by(&["*".into()]).len(), EVENTS.len());
        assert!(raised_by(&["task.*".into()]).is_empty());
        // Raising an event is getting one of its types; covering it, all of them.
        let assigned = vec!["lead.assigned".to_string()];
        assert_eq!(raised_by(&assigned), vec!["ONCRMLEADUPDATE"]);
        assert!(!covers(&assigned, "ONCRMLEADUPDATE"));
        assert!(covers(&["lead.*".into()], "ONCRMLEADUPDATE"));
        assert!(!covers(&["lead.*".into()], "ONCRMTASKADD"));
    }

    #[test]
    fn the_application_token_is_stable_per_secret_and_hides_it() {
        let a = application_token("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            application_token("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        );
        assert_ne!(a, application_token("whsec_other"));
        let o = Origin::new("127.0.0.1:8080");
        assert_eq!(o.client_endpoint, "http://127.0.0.1:8080/rest/");
        assert_eq!(o.member_id.len(), 32);
        assert_ne!(o.member_id, Origin::new("127.0.0.1:8081").member_id);
    }
}
