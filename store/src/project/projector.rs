//! The projector: applies events to the projections inside a write transaction. Entity states
//! are held in memory while a transaction appends (an entity touched by a hundred events is
//! loaded once and written once) and written back by [`Projector::flush`]; side-table rows
//! and stage visits are written as events arrive. Whoever appends (the log's `Tx`, a catch-up)
//! drives it: the projector knows nothing of the log.

use super::rows::{self, IndexKey};
use super::side;
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::projection::project;
use leadflow_engine::{Entity, Event, StreamId};
use rusqlite::Connection;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Applies events to entity states held in memory, and writes them back on [`Projector::flush`].
/// Stage history rows are written as events arrive.
pub(crate) struct Projector {
    schema: &'static str,
    cache: HashMap<StreamId, Slot>,
    dirty: HashSet<StreamId>,
    /// Bookkeeping events of entities not in the cache, counted instead of loading them:
    /// they only add to the version (see `Entity::add_version`).
    bumps: HashMap<StreamId, i64>,
    /// Timers whose rows were removed in bulk when they were taken to fire (see
    /// `Tx::take_due_timers`): their firing events need not remove them again.
    taken: HashMap<StreamId, Vec<i64>>,
    /// Entities deleted since the last flush: their rows go then.
    deleted: HashSet<StreamId>,
    pending: usize,
}

/// An entity in the projector's cache.
struct Slot {
    /// Its state as of the events applied so far.
    state: Option<Entity>,
    /// What its row in the table holds in indexed columns; `None` if it has no row yet.
    stored: Option<IndexKey>,
}

impl Projector {
    /// A projector writing to `schema`.
    pub(crate) fn new(schema: &'static str) -> Self {
        Projector {
            schema,
            cache: HashMap::new(),
            dirty: HashSet::new(),
            bumps: HashMap::new(),
            taken: HashMap::new(),
            deleted: HashSet::new(),
            pending: 0,
        }
    }

    /// The schema it writes to.
    pub(crate) fn schema(&self) -> &'static str {
        self.schema
    }

    /// Events applied since the last flush.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the entity is known to exist in the cache.
    pub(crate) fn cached(&self, stream: StreamId) -> bool {
        matches!(self.cache.get(&stream), Some(Slot { state: Some(_), .. }))
    }

    /// Records that `stream` has just been created, so it has no row to load.
    pub(crate) fn created(&mut self, stream: StreamId) {
        self.cache.entry(stream).or_insert(Slot {
            state: None,
            stored: None,
        });
    }

    /// The entity's current state: from the cache, else from the table.
    pub(crate) fn load(
        &mut self,
        conn: &Connection,
        stream: StreamId,
    ) -> Result<Option<Entity>, Error> {
        Ok(self.slot(conn, stream)?.state.clone())
    }

    fn slot(&mut self, conn: &Connection, stream: StreamId) -> Result<&mut Slot, Error> {
        Ok(match self.cache.entry(stream) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let mut state = rows::load(conn, self.schema, stream)?;
                let stored = state.as_ref().map(rows::index_key);
                if let Some(n) = self.bumps.remove(&stream) {
                    // Counted bookkeeping is now part of the cached state, written with it.
                    if let Some(e) = &mut state {
                        e.add_version(n);
                    }
                    self.dirty.insert(stream);
                }
                v.insert(Slot { state, stored })
            }
        })
    }

    /// Applies one event, appended by `actor` (as stored: `employee:ivanov`).
    pub(crate) fn apply(
        &mut self,
        conn: &Connection,
        position: i64,
        stream: StreamId,
        event: &Event,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<(), Error> {
        let mut take = |id: Option<i64>| match self.taken.get_mut(&stream) {
            Some(ids) => {
                // A task has one timer, so its overdue event (which names none) takes it.
                let at = match id {
                    Some(id) => ids.iter().position(|t| *t == id),
                    None => (!ids.is_empty()).then_some(0),
                };
                let found = at.map(|i| ids.swap_remove(i)).is_some();
                if ids.is_empty() {
                    self.taken.remove(&stream);
                }
                found
            }
            None => false,
        };
        let taken = match event {
            Event::DeadlineElapsed(d) => take(Some(d.scheduled)),
            Event::RobotsResumed(r) => take(Some(r.delayed)),
            Event::TaskOverdue(_) => take(None),
            _ => false,
        };
        if !taken {
            // (A taken timer's row is gone already: nothing else in those events to project.)
            side::apply(conn, self.schema, position, stream, event, at, actor)?;
        }
        if !stream.kind.is_entity() {
            return Ok(());
        }
        if !event.is_activity() && !self.cache.contains_key(&stream) {
            // A deadline firing, a notification, a journal entry: no need to load the entity.
            *self.bumps.entry(stream).or_default() += 1;
            self.pending += 1;
            return Ok(());
        }
        let schema = self.schema;
        let deleted = self.deleted.contains(&stream);
        let slot = self.slot(conn, stream)?;
        let p = project(slot.state.take(), event, at);
        // After a deletion the stream holds no entity: later bookkeeping on it is expected.
        let ignored = p.entity.is_none() && !event.is_deletion() && !deleted;
        slot.state = p.entity;
        if event.is_deletion() {
            side::stage_left(conn, schema, stream, at)?;
            self.deleted.insert(stream);
        }
        if p.left.is_some() {
            side::stage_left(conn, schema, stream, at)?;
        }
        if let Some(v) = &p.entered {
            side::stage_visit(conn, schema, position, v, None)?;
        }
        if ignored {
            tracing::warn!(position, %stream, event = event.event_type(), "event does not apply to the entity's state; ignored");
        }
        self.dirty.insert(stream);
        self.pending += 1;
        Ok(())
    }

    /// Records that the rows of these timers were removed, so that projecting their firing
    /// events skips removing them.
    pub(crate) fn taken(&mut self, timers: impl IntoIterator<Item = (StreamId, i64)>) {
        for (stream, id) in timers {
            self.taken.entry(stream).or_default().push(id);
        }
    }

    /// Forgets every cached state without writing it (after a rollback).
    pub(crate) fn discard(&mut self) {
        self.cache.clear();
        self.dirty.clear();
        self.bumps.clear();
        self.deleted.clear();
        self.pending = 0;
    }

    /// Writes every changed entity to its table and empties the cache.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        // In key order: neighbouring rows share pages.
        let mut dirty: Vec<StreamId> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for stream in dirty {
            if let Some(Slot {
                state: Some(e),
                stored,
            }) = self.cache.get(&stream)
            {
                rows::save(conn, self.schema, e, stored.as_ref())?;
            }
        }
        let mut deleted: Vec<StreamId> = self.deleted.drain().collect();
        deleted.sort_unstable();
        for stream in deleted {
            if let Some(Slot {
                state: None,
                stored: Some(stored),
            }) = self.cache.get(&stream)
            {
                rows::delete(conn, self.schema, stream, stored)?;
            }
        }
        let mut bumps: Vec<(StreamId, i64)> = self.bumps.drain().collect();
        bumps.sort_unstable();
        for (stream, n) in bumps {
            rows::add_version(conn, self.schema, stream, n)?;
        }
        self.cache.clear();
        self.pending = 0;
        Ok(())
    }
}
