//! The list queries' side indexes, written with the entity's row (see `rows::save`):
//!
//! - `search_text`: each entity's title, name, phones and e-mails, the content of the FTS5
//!   table `search_fts` (trigram tokenizer), which triggers on `search_text` keep in step in
//!   the same transaction. Substring and text searches look the entity up there. A row's `id`
//!   is [`key`]: the entity id times 8 plus the kind's [`code`].
//! - `field_values`: each entity's scalar custom fields (text, numbers, yes/no as 1/0), so that
//!   a custom-field filter (`=`, `in`, ranges) is an index lookup.

use super::tables::sql;
use crate::error::Error;
use leadflow_engine::{Entity, EntityKind, StreamId};
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// The kind's number in `search_text` keys (1 to 5).
pub(crate) fn code(kind: EntityKind) -> i64 {
    match kind {
        EntityKind::Lead => 1,
        EntityKind::Deal => 2,
        EntityKind::Contact => 3,
        EntityKind::Company => 4,
        EntityKind::Task => 5,
        EntityKind::Ruleset | EntityKind::System | EntityKind::Token | EntityKind::Endpoint => 0,
    }
}

/// The `search_text` id (and `search_fts` rowid) of an entity.
pub(crate) fn key(stream: StreamId) -> i64 {
    stream.id.saturating_mul(8) + code(stream.kind)
}

/// What `search_text` holds for an entity: title, name, phones, e-mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    title: String,
    name: String,
    phones: String,
    emails: String,
}

/// The entity's searchable text.
pub(crate) fn text_of(e: &Entity) -> Text {
    let t = |title: &str, name: Option<&str>, phones: &[String], emails: &[String]| Text {
        title: title.to_owned(),
        name: name.unwrap_or_default().to_owned(),
        phones: phones.join(" "),
        emails: emails.join(" "),
    };
    match e {
        Entity::Lead(l) => t(&l.title, l.name.as_deref(), &l.phones, &l.emails),
        Entity::Deal(d) => t(&d.title, None, &[], &[]),
        Entity::Contact(c) => t("", Some(&c.name), &c.phones, &c.emails),
        Entity::Company(c) => t("", Some(&c.name), &c.phones, &c.emails),
        Entity::Task(k) => t(&k.title, None, &[], &[]),
    }
}

/// Brings the entity's `search_text` row from `old` (`None`: no row) to `new`.
pub(crate) fn save_text(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    old: Option<&Text>,
    new: &Text,
) -> Result<(), Error> {
    if old == Some(new) {
        return Ok(());
    }
    // An upsert, not INSERT OR REPLACE: REPLACE's delete would not fire the delete trigger
    // that keeps `search_fts` in step.
    conn.prepare_cached(sql(
        schema,
        "INSERT INTO {s}.search_text (id, kind, entity_id, title, name, phones, emails) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET \
         title = excluded.title, name = excluded.name, phones = excluded.phones, emails = excluded.emails",
    ))?
    .execute(params![
        key(stream),
        stream.kind.as_str(),
        stream.id,
        new.title,
        new.name,
        new.phones,
        new.emails
    ])?;
    Ok(())
}

/// Removes the entity's `search_text` row (the trigger removes it from `search_fts`).
pub(crate) fn delete_text(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
) -> Result<(), Error> {
    conn.prepare_cached(sql(schema, "DELETE FROM {s}.search_text WHERE id = ?1"))?
        .execute([key(stream)])?;
    Ok(())
}

/// A custom field's value as `field_values` stores it; `None` for an empty or non-scalar one.
pub(crate) fn field_value(v: &Json) -> Option<Value> {
    Some(match v {
        Json::String(s) if !s.is_empty() => Value::Text(s.clone()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64()?),
        },
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        _ => return None,
    })
}

/// The entity's indexed custom fields, by field id.
pub(crate) fn fields_of(e: &Entity) -> Vec<(String, Value)> {
    let fields: &BTreeMap<String, Json> = match e {
        Entity::Lead(l) => &l.fields,
        Entity::Deal(d) => &d.fields,
        Entity::Contact(c) => &c.fields,
        Entity::Company(c) => &c.fields,
        Entity::Task(_) => return Vec::new(),
    };
    fields
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), field_value(v)?)))
        .collect()
}

/// Brings the entity's `field_values` rows from `old` to `new`.
pub(crate) fn save_fields(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    old: &[(String, Value)],
    new: &[(String, Value)],
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    for (field, value) in old.iter().filter(|k| !new.contains(k)) {
        conn.prepare_cached(sql(
            schema,
            "DELETE FROM {s}.field_values WHERE kind = ?1 AND field = ?2 AND value = ?3 AND entity_id = ?4",
        ))?
        .execute(params![stream.kind.as_str(), field, value, stream.id])?;
    }
    for (field, value) in new.iter().filter(|k| !old.contains(k)) {
        conn.prepare_cached(sql(
            schema,
            "INSERT OR IGNORE INTO {s}.field_values (kind, field, value, entity_id) VALUES (?1, ?2, ?3, ?4)",
        ))?
        .execute(params![stream.kind.as_str(), field, value, stream.id])?;
    }
    Ok(())
}
