//! The projector: applies events to the projections inside a write transaction. Entity states
//! are held in memory while a transaction appends (an entity touched by a hundred events is
//! loaded once and written once) and written back by [`Projector::flush`]; side-table rows
//! and stage visits are written as events arrive. Whoever appends (the log's `Tx`, a catch-up)
//! drives it: the projector knows nothing of the log.
//!
//! It follows the transaction's savepoints ([`Projector::savepoint`]): each remembers what
//! the streams it changes were like before it, so a rollback puts the cache back as it was
//! (the tables go back with SQLite's savepoint) and nothing has to be written before one.

use super::rows::{self, IndexKey};
use super::side;
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::projection::project;
use leadflow_engine::{Entity, EntityKind, Event, StreamId};
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
    /// The open savepoints, innermost last.
    levels: Vec<Level>,
    /// Cached entities beyond which a flush empties the cache ([`CACHE_LIMIT`]).
    limit: usize,
}

/// Cached entities kept after a flush, beyond which a flush empties the cache (a bulk append
/// touches many entities once each).
const CACHE_LIMIT: usize = 4096;

/// An open savepoint: what each stream it changed was like before it.
struct Level {
    before: HashMap<StreamId, Before>,
    pending: usize,
}

/// A stream's part of the projector's state.
struct Before {
    slot: Option<Slot>,
    dirty: bool,
    bumps: Option<i64>,
    taken: Option<Vec<i64>>,
    deleted: bool,
}

fn set_member(set: &mut HashSet<StreamId>, stream: StreamId, member: bool) {
    if member {
        set.insert(stream);
    } else {
        set.remove(&stream);
    }
}

/// An entity in the projector's cache.
#[derive(Clone)]
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
            levels: Vec::new(),
            limit: CACHE_LIMIT,
        }
    }

    /// Empties the cache at every flush past `n` entities instead (for tests of that path).
    pub(crate) fn limit_cache(&mut self, n: usize) {
        self.limit = n;
    }

    /// Opens a savepoint (the transaction has just opened its own).
    pub(crate) fn savepoint(&mut self) {
        self.levels.push(Level {
            before: HashMap::new(),
            pending: self.pending,
        });
    }

    /// Releases the innermost savepoint: its changes stay, and the savepoint around it (if
    /// any) remembers what they changed.
    pub(crate) fn release(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        if let Some(outer) = self.levels.last_mut() {
            for (stream, before) in level.before {
                outer.before.entry(stream).or_insert(before);
            }
        }
    }

    /// Rolls back the innermost savepoint (the transaction has just rolled back its own):
    /// every stream it changed is put back as it was before it.
    pub(crate) fn rollback(&mut self) {
        let Some(level) = self.levels.pop() else {
            return;
        };
        for (stream, b) in level.before {
            match b.slot {
                Some(slot) => self.cache.insert(stream, slot),
                None => self.cache.remove(&stream),
            };
            set_member(&mut self.dirty, stream, b.dirty);
            set_member(&mut self.deleted, stream, b.deleted);
            match b.bumps {
                Some(n) => self.bumps.insert(stream, n),
                None => self.bumps.remove(&stream),
            };
            match b.taken {
                Some(ids) => self.taken.insert(stream, ids),
                None => self.taken.remove(&stream),
            };
        }
        self.pending = level.pending;
    }

    /// Before `stream`'s state changes: the innermost savepoint remembers it as it was.
    fn remember(&mut self, stream: StreamId) {
        let Some(level) = self.levels.last_mut() else {
            return;
        };
        if let Entry::Vacant(v) = level.before.entry(stream) {
            v.insert(Before {
                slot: self.cache.get(&stream).cloned(),
                dirty: self.dirty.contains(&stream),
                bumps: self.bumps.get(&stream).copied(),
                taken: self.taken.get(&stream).cloned(),
                deleted: self.deleted.contains(&stream),
            });
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

    /// The entities of `kind` changed since the last flush — whose rows may not hold what
    /// they are now —, each with its state now (`None`: deleted), so that a query over the
    /// tables can take them from here instead of flushing first. `None` when there are more
    /// than `max` of them (a flush is then the cheaper way).
    pub(crate) fn unflushed(
        &self,
        kind: EntityKind,
        max: usize,
    ) -> Option<Vec<(i64, Option<&Entity>)>> {
        let mut out = Vec::new();
        for stream in self.dirty.iter().filter(|s| s.kind == kind) {
            if out.len() == max {
                return None;
            }
            // A changed entity is always cached (a flush writes it before the cache may be
            // emptied); were one not, the tables could not be corrected: flush.
            let slot = self.cache.get(stream)?;
            out.push((stream.id, slot.state.as_ref()));
        }
        Some(out)
    }

    /// Whether the entity is known to exist in the cache.
    pub(crate) fn cached(&self, stream: StreamId) -> bool {
        matches!(self.cache.get(&stream), Some(Slot { state: Some(_), .. }))
    }

    /// Records that `stream` has just been created, so it has no row to load.
    pub(crate) fn created(&mut self, stream: StreamId) {
        self.remember(stream);
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
        if !self.cache.contains_key(&stream) {
            self.remember(stream);
        }
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
        self.remember(stream);
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
            self.remember(stream);
            self.taken.entry(stream).or_default().push(id);
        }
    }

    /// Writes every changed entity to its table. The states stay cached (what a row holds
    /// now), unless the cache grew past its limit ([`CACHE_LIMIT`]).
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        // In key order: neighbouring rows share pages.
        let mut dirty: Vec<StreamId> = self.dirty.iter().copied().collect();
        dirty.sort_unstable();
        for stream in dirty {
            self.remember(stream);
            self.dirty.remove(&stream);
            if let Some(Slot {
                state: Some(e),
                stored,
            }) = self.cache.get_mut(&stream)
            {
                *stored = Some(rows::save(conn, self.schema, e, stored.as_ref())?);
            }
        }
        // A deleted entity stays in `deleted` while its slot is cached (bookkeeping on its
        // stream after the deletion is expected, not an event that does not apply); its row
        // goes once.
        let mut deleted: Vec<StreamId> = self.deleted.iter().copied().collect();
        deleted.sort_unstable();
        for stream in deleted {
            if !matches!(
                self.cache.get(&stream),
                Some(Slot {
                    state: None,
                    stored: Some(_)
                })
            ) {
                continue;
            }
            self.remember(stream);
            if let Some(Slot { stored, .. }) = self.cache.get_mut(&stream)
                && let Some(stored) = stored.take()
            {
                rows::delete(conn, self.schema, stream, &stored)?;
            }
        }
        let mut bumps: Vec<(StreamId, i64)> = self.bumps.iter().map(|(s, n)| (*s, *n)).collect();
        bumps.sort_unstable();
        for (stream, n) in bumps {
            self.remember(stream);
            self.bumps.remove(&stream);
            rows::add_version(conn, self.schema, stream, n)?;
        }
        if self.cache.len() >= self.limit {
            // Emptied inside savepoints too, so memory stays bounded however much one
            // savepoint projects. Every state is written now, so the tables hold it: one a
            // savepoint changed it remembered when it changed, and one it did not change the
            // tables hold as they will after a rollback.
            self.cache.clear();
            self.deleted.clear();
        }
        self.pending = 0;
        Ok(())
    }
}
