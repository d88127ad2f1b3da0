//! Leads: the commands that create them, an event that edits one, and reading one back.

use chrono::{DateTime, Utc};
use leadflow_engine::command::{FieldInputs, NewLead};
use leadflow_engine::event::Updated;
use leadflow_engine::model::Lead;
use leadflow_engine::{Command, Config, Entity, EntityKind, Event, StreamId};
use leadflow_store::Store;

/// A new lead for a countertop from the web form, with one phone and nothing else.
pub fn countertop_lead(phone: &str) -> Command {
    Command::CreateLead(NewLead {
        title: Some("Countertop".into()),
        phones: vec![phone.into()],
        source: Some("web_form".into()),
        ..Default::default()
    })
}

/// A valid lead named `Client n` from the web form with a phone derived from `n`, distinct
/// for each `n` below ten million.
pub fn numbered_lead(n: u64) -> Command {
    Command::CreateLead(NewLead {
        name: Some(format!("Client {n}")),
        phones: vec![format!(
            "+7 912 {:03} {:02} {:02}",
            n / 10_000 % 1000,
            n / 100 % 100,
            n % 100
        )],
        source: Some("web_form".into()),
        ..Default::default()
    })
}

/// Field values (custom or built-in) by name, for a command's `fields` or `changes`.
pub fn fields(pairs: &[(&str, serde_json::Value)]) -> FieldInputs {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A `lead.updated` event that sets the lead's comment, for raw appends.
pub fn comment_event(text: &str) -> Event {
    Event::LeadUpdated(Updated {
        changes: [("comment".to_owned(), serde_json::Value::from(text))]
            .into_iter()
            .collect(),
    })
}

/// Creates a [`countertop_lead`] by `admin` at `at`; returns its id.
pub fn create_lead(store: &mut Store, config: &Config, at: DateTime<Utc>, phone: &str) -> i64 {
    crate::exec(store, config, at, &countertop_lead(phone))
        .stream
        .id
}

/// The stream of lead `id`.
pub fn lead_stream(id: i64) -> StreamId {
    StreamId::new(EntityKind::Lead, id)
}

/// Lead `id` as projected; panics unless it is a lead.
pub fn load_lead(store: &Store, id: i64) -> Lead {
    match store.load(lead_stream(id)).unwrap() {
        Some(Entity::Lead(l)) => l,
        other => panic!("lead-{id}: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_leads_have_valid_distinct_phones() {
        let config = crate::config();
        let mut store = crate::memory_store();
        for n in [0, 1, 99, 100, 12_345] {
            crate::exec(&mut store, &config, crate::t0(), &numbered_lead(n));
        }
        assert_eq!(crate::all_streams(&store).len(), 5);
        crate::assert_log_is_sound(&mut store);
    }

    #[test]
    fn a_created_lead_loads_back() {
        let config = crate::config();
        let mut store = crate::memory_store();
        let id = create_lead(&mut store, &config, crate::t0(), "+79120000001");
        assert_eq!(load_lead(&store, id).title, "Countertop");
    }
}
