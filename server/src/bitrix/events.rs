//! The body of an outgoing Bitrix24 event (BITRIX24.md §7): form-encoded, keys in PHP's
//! `http_build_query` form, only the record's id in `data[FIELDS][ID]`; the handler calls
//! `crm.<entity>.get` for the rest and checks `auth[application_token]`.
//!
//! ```text
//! event=ONCRMLEADADD&event_handler_id=707&data%5BFIELDS%5D%5BID%5D=123&ts=1742807175&auth%5Bdomain%5D=…
//! ```

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

/// The Bitrix24 event a stored leadflow event raises, if any: `lead.created` is
/// `ONCRMLEADADD`; a change of fields, stage or responsible is `ONCRMLEADUPDATE`; the same for
/// deals, contacts and companies. Deletions raise `ON…DELETE` when the service records them
/// (pass `<kind>.deleted`). Bookkeeping events (deadlines, notifications…) raise none.
pub fn bitrix_event(stored_type: &str) -> Option<&'static str> {
    Some(match stored_type {
        "lead.created" => "ONCRMLEADADD",
        "lead.updated" | "lead.stage_changed" | "lead.assigned" => "ONCRMLEADUPDATE",
        "lead.deleted" => "ONCRMLEADDELETE",
        "deal.created" => "ONCRMDEALADD",
        "deal.updated" | "deal.stage_changed" | "deal.assigned" => "ONCRMDEALUPDATE",
        "deal.deleted" => "ONCRMDEALDELETE",
        "contact.created" => "ONCRMCONTACTADD",
        "contact.updated" => "ONCRMCONTACTUPDATE",
        "contact.deleted" => "ONCRMCONTACTDELETE",
        "company.created" => "ONCRMCOMPANYADD",
        "company.updated" => "ONCRMCOMPANYUPDATE",
        "company.deleted" => "ONCRMCOMPANYDELETE",
        _ => return None,
    })
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
        // And it reads back the PHP way.
        let p = crate::bitrix::params::parse_query(&body).unwrap();
        assert_eq!(p.get("event_handler_id"), Some(&serde_json::json!("707")));
        assert_eq!(p.get("data").unwrap()["FIELDS"]["ID"], "123");
        assert_eq!(
            p.get("auth").unwrap()["client_endpoint"],
            "http://127.0.0.1:8080/rest/"
        );
    }

    #[test]
    fn leadflow_events_raise_the_bitrix24_events_event_bind_accepts() {
        assert_eq!(bitrix_event("lead.created"), Some("ONCRMLEADADD"));
        assert_eq!(bitrix_event("lead.stage_changed"), Some("ONCRMLEADUPDATE"));
        assert_eq!(bitrix_event("deal.assigned"), Some("ONCRMDEALUPDATE"));
        assert_eq!(bitrix_event("lead.deadline_set"), None);
        for t in [
            "lead.created",
            "lead.updated",
            "lead.deleted",
            "deal.created",
            "deal.updated",
            "deal.deleted",
            "contact.created",
            "company.updated",
        ] {
            let e = bitrix_event(t).unwrap();
            assert!(crate::bitrix::dispatch::EVENTS.contains(&e), "{e}");
        }
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
}
