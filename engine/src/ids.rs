//! Identifiers: entity kinds, numeric entity ids and the stream names built from them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kinds of event stream: one per entity kind, plus the rule-set history (`ruleset-1`),
/// the engine's own stream (`system-1`: schedule firings, reports, incidents about no entity)
/// and one stream per API token (`token-3`: made, revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A lead: the coldest contact.
    Lead,
    /// A deal in a deal pipeline.
    Deal,
    /// A person.
    Contact,
    /// A legal entity.
    Company,
    /// A call, e-mail, meeting or offer to send.
    Task,
    /// Not an entity: the history of activated rule sets.
    Ruleset,
    /// Not an entity: what the engine does on its own (schedules, reports).
    System,
    /// Not an entity: an API token's history (created, revoked).
    Token,
    /// Not an entity: a webhook endpoint and its subscription (`endpoint-3`), with the
    /// delivery events of the messages it is sent.
    Endpoint,
}

impl EntityKind {
    /// Every entity kind (the kinds with a projection table), in a stable order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Lead,
        EntityKind::Deal,
        EntityKind::Contact,
        EntityKind::Company,
        EntityKind::Task,
    ];

    /// Every stream kind: the entities, then `ruleset`, `system`, `token` and `endpoint`.
    pub const STREAMS: [EntityKind; 9] = [
        EntityKind::Lead,
        EntityKind::Deal,
        EntityKind::Contact,
        EntityKind::Company,
        EntityKind::Task,
        EntityKind::Ruleset,
        EntityKind::System,
        EntityKind::Token,
        EntityKind::Endpoint,
    ];

    /// Whether streams of this kind hold an entity (as opposed to `ruleset`, `system`,
    /// `token` and `endpoint`).
    pub fn is_entity(self) -> bool {
        !matches!(
            self,
            EntityKind::Ruleset | EntityKind::System | EntityKind::Token | EntityKind::Endpoint
        )
    }

    /// The stream-name prefix and the word users type: `lead`, `deal`…
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Lead => "lead",
            EntityKind::Deal => "deal",
            EntityKind::Contact => "contact",
            EntityKind::Company => "company",
            EntityKind::Task => "task",
            EntityKind::Ruleset => "ruleset",
            EntityKind::System => "system",
            EntityKind::Token => "token",
            EntityKind::Endpoint => "endpoint",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EntityKind::STREAMS
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown entity kind '{s}'"))
    }
}

/// The stream of one entity, written `lead-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// What the entity is.
    pub kind: EntityKind,
    /// Its number, unique within the kind, starting at 1.
    pub id: i64,
}

impl StreamId {
    /// The stream of entity `id` of `kind`.
    pub fn new(kind: EntityKind, id: i64) -> Self {
        StreamId { kind, id }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind, self.id)
    }
}

impl FromStr for StreamId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, id) = s
            .rsplit_once('-')
            .ok_or_else(|| format!("'{s}' is not a stream id like lead-42"))?;
        let kind = kind.parse()?;
        let id: i64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("'{s}' is not a stream id like lead-42"))?;
        Ok(StreamId { kind, id })
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

string_id!(
    /// An employee's login-like id from the config, e.g. `petrova`.
    EmployeeId
);
string_id!(
    /// A team's id from the config, e.g. `first_line`.
    TeamId
);
string_id!(
    /// A pipeline's id from the config, e.g. `lead`, `goods`.
    PipelineId
);
string_id!(
    /// A stage's id within its pipeline, e.g. `in_work`.
    StageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_through_text() {
        let s: StreamId = "lead-42".parse().unwrap();
        assert_eq!(s, StreamId::new(EntityKind::Lead, 42));
        assert_eq!(s.to_string(), "lead-42");
    }

    #[test]
    fn token_streams_are_streams_but_not_entities() {
        let s: StreamId = "token-3".parse().unwrap();
        assert_eq!(s, StreamId::new(EntityKind::Token, 3));
        assert!(!EntityKind::Token.is_entity());
        assert!(!EntityKind::ALL.contains(&EntityKind::Token));
    }

    #[test]
    fn malformed_stream_ids_are_rejected() {
        for bad in ["lead", "lead-", "lead-x", "lead-0", "cow-1", "-3"] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad} parsed");
        }
    }
}
