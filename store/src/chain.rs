//! The hash chain: each event's SHA-256 covers its content and the previous event's hash.
//!
//! The hashed bytes are, in order: the previous hash (32 bytes; zeros for the first event), the
//! position as 8 big-endian bytes, then each of stream name, version, type, schema version,
//! payload, occurred-at, recorded-at, actor, causation and correlation as a 4-byte big-endian
//! length followed by its UTF-8 text (integers in decimal, absent values empty). The format is
//! documented in docs/SCHEMA.md so an auditor can recompute it with any tool.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The "previous hash" of the first event.
pub const GENESIS: Hash = [0; 32];

/// The fields of an event that the chain covers.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
    pub position: i64,
    pub stream: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub schema_version: i64,
    pub payload: &'a str,
    pub occurred_at: &'a str,
    pub recorded_at: &'a str,
    pub actor: &'a str,
    pub causation: Option<i64>,
    pub correlation: i64,
}

/// The hash of an event given the previous event's hash.
pub fn event_hash(prev: &Hash, e: &Hashed<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(e.position.to_be_bytes());
    let mut field = |s: &str| {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    };
    field(e.stream);
    field(&e.version.to_string());
    field(e.event_type);
    field(&e.schema_version.to_string());
    field(e.payload);
    field(e.occurred_at);
    field(e.recorded_at);
    field(e.actor);
    field(&e.causation.map(|c| c.to_string()).unwrap_or_default());
    field(&e.correlation.to_string());
    h.finalize().into()
}

/// Lowercase hex of a hash.
pub fn to_hex(h: &Hash) -> String {
    leadflow_engine::hex(h)
}

/// Parses 64 hex digits.
pub fn from_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hashed<'static> {
        Hashed {
            position: 1,
            stream: "lead-1",
            version: 1,
            event_type: "lead.created",
            schema_version: 1,
            payload: "{}",
            occurred_at: "2026-01-01T00:00:00.000000Z",
            recorded_at: "2026-01-01T00:00:00.000000Z",
            actor: "system",
            causation: None,
            correlation: 1,
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = event_hash(&GENESIS, &sample());
        let variants = [
            Hashed {
                position: 2,
                ..sample()
            },
            Hashed {
                stream: "lead-2",
                ..sample()
            },
            Hashed {
                version: 2,
                ..sample()
            },
            Hashed {
                event_type: "lead.updated",
                ..sample()
            },
            Hashed {
                schema_version: 2,
                ..sample()
            },
            Hashed {
                payload: "{ }",
                ..sample()
            },
            Hashed {
                occurred_at: "2026-01-01T00:00:00.000001Z",
                ..sample()
            },
            Hashed {
                recorded_at: "2026-01-01T00:00:01.000000Z",
                ..sample()
            },
            Hashed {
                actor: "employee:x",
                ..sample()
            },
            Hashed {
                causation: Some(1),
                ..sample()
            },
            Hashed {
                correlation: 2,
                ..sample()
            },
        ];
        for v in variants {
            assert_ne!(event_hash(&GENESIS, &v), base, "{v:?}");
        }
        assert_ne!(event_hash(&[1; 32], &sample()), base);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = Hashed {
            stream: "lead-1",
            actor: "xsystem",
            ..sample()
        };
        let b = Hashed {
            stream: "lead-1x",
            actor: "system",
            ..sample()
        };
        assert_ne!(event_hash(&GENESIS, &a), event_hash(&GENESIS, &b));
    }

    #[test]
    fn hex_round_trips() {
        let h = event_hash(&GENESIS, &sample());
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
