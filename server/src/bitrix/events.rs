//! The body of an outgoing Bitrix24 event (BITRIX24.md §7) and the table of the events the
//! facade serves. They live in `leadflow-delivery` (the worker writes the body); the facade
//! uses them for `event.bind`, `event.unbind` and `event.get`.

pub use leadflow_delivery::bitrix::{
    Auth, EVENTS, Event, Origin, application_token, bitrix_event, covers, leadflow_types, payload,
    raised_by, urlencode,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_reads_back_the_php_way() {
        let auth = Auth::of(&Origin::new("127.0.0.1:8080"), "whsec_x");
        let body = payload(&Event {
            name: "ONCRMLEADADD",
            handler_id: 707,
            entity_id: 123,
            ts: 1742807175,
            auth: &auth,
        });
        let p = crate::bitrix::params::parse_query(&body).unwrap();
        assert_eq!(p.get("event"), Some(&serde_json::json!("ONCRMLEADADD")));
        assert_eq!(p.get("event_handler_id"), Some(&serde_json::json!("707")));
        assert_eq!(p.get("data").unwrap()["FIELDS"]["ID"], "123");
        assert_eq!(
            p.get("auth").unwrap()["client_endpoint"],
            "http://127.0.0.1:8080/rest/"
        );
        assert_eq!(
            p.get("auth").unwrap()["application_token"],
            application_token("whsec_x").as_str()
        );
    }
}
