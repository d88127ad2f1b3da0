//! Timers, schedules and idle rules: [`Runtime::tick`] appends the firing event of each due
//! timer (`deadline.elapsed`, `robots.resumed`, `task.overdue` — the timers are rows of the
//! store's `timers` projection, keyed on `(due_at, id)`), plus `schedule.fired` for cron rules
//! and `idle.detected` for idle rules, and then processes them like any other event;
//! [`Runtime::next_wake`] says when anything falls due next, and [`Runtime::advance`] moves a
//! virtual clock through them.

use super::{Report, Runtime, SYSTEM_STREAM};
use crate::context::RobotError;
use chrono::{DateTime, Utc};
use leadflow_engine::event::{
    DeadlineElapsed, IdleDetected, RobotsResumed, ScheduleFired, TaskOverdue,
};
use leadflow_engine::ids::StageId;
use leadflow_engine::rules::{Rule, Trigger};
use leadflow_engine::stored::parse_time;
use leadflow_engine::workspace::{Backend, Workspace};
use leadflow_engine::{Actor, EntityKind, Event, EventMeta, StreamId};

/// Timers fired per transaction.
const TIMERS_PER_TX: usize = 1000;

/// How many ticks [`Runtime::advance`] makes at one instant before it gives up on it.
pub const TICKS_PER_INSTANT: usize = 1000;

/// What [`Runtime::advance`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// The ticks' work, summed.
    pub report: Report,
    /// Where timers kept falling due at once, over and over, if they did.
    pub stuck_at: Option<DateTime<Utc>>,
}

/// An idle rule: its entity, its wait and the stages it watches.
struct IdleRule<'a> {
    rule: &'a Rule,
    entity: EntityKind,
    after: chrono::Duration,
    stages: Vec<String>,
}

impl Runtime {
    /// Fires everything due at or before `now` — timers, cron schedules, idle rules — and
    /// processes the events that causes (and any other unprocessed event).
    pub fn tick<D: Backend>(&self, db: &mut D, now: DateTime<Utc>) -> Result<Report, RobotError> {
        let mut total = self.process(db, now)?;
        let mut mine = Vec::new();
        loop {
            // The firings and the rules' reactions to them commit together: one transaction
            // instead of two, and no firing is ever left unprocessed by a crash in between.
            let (fired, report, more) = self.write(db, now, |ws| {
                self.activate_in(ws, now)?;
                let fired = self.fire_timers(ws, now, TIMERS_PER_TX)?;
                let mut report = Report::default();
                // `process` just checked the cursor against the log.
                let more =
                    self.process_in(ws, now, &mut report, TIMERS_PER_TX, false, &mut mine)?;
                Ok::<_, RobotError>((fired, report, more))
            })?;
            total.timers += fired;
            total.add(&report);
            if more || !mine.is_empty() {
                total.add(&self.process_with(db, now, &mut mine)?);
            }
            if fired < TIMERS_PER_TX {
                break;
            }
        }
        let fired = self.write(db, now, |ws| {
            let s = self.fire_schedules(ws, now)?;
            let i = self.fire_idle(ws, now)?;
            Ok::<_, RobotError>(s + i)
        })?;
        total.timers += fired;
        total.add(&self.process(db, now)?);
        Ok(total)
    }

    /// [`Runtime::tick`] in the caller's write transaction, for a service whose writer owns
    /// the write connection: processes the backlog, fires up to a batch of due timers (and,
    /// when that was all of them, the schedules and idle rules due), and processes the rules'
    /// reactions. Returns what it did, the positions of the external robots' requests it
    /// processed (to run after the commit) and whether more timers may be due (call again).
    pub fn tick_in(
        &self,
        ws: &mut dyn Workspace,
        now: DateTime<Utc>,
    ) -> Result<(Report, Vec<i64>, bool), RobotError> {
        let (mut report, mut mine) = self.react_in(ws, now)?;
        let fired = self.fire_timers(ws, now, TIMERS_PER_TX)?;
        let more = fired == TIMERS_PER_TX;
        report.timers += fired;
        if !more {
            report.timers += self.fire_schedules(ws, now)?;
            report.timers += self.fire_idle(ws, now)?;
        }
        self.process_in(ws, now, &mut report, usize::MAX, false, &mut mine)?;
        Ok((report, mine, more))
    }

    /// Appends the firing events of up to `limit` due timers; how many fired.
    fn fire_timers(
        &self,
        ws: &mut dyn Workspace,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, RobotError> {
        let due = ws.take_due_timers(now, limit)?;
        for (stream, timer) in &due {
            let event = match timer.what.as_str() {
                "deadline" => Event::DeadlineElapsed(DeadlineElapsed {
                    name: timer.name.clone().unwrap_or_default(),
                    scheduled: timer.id,
                    due_at: timer.due_at,
                }),
                "robots" => Event::RobotsResumed(RobotsResumed { delayed: timer.id }),
                _ => Event::TaskOverdue(TaskOverdue {
                    due_at: timer.due_at,
                }),
            };
            let meta = EventMeta {
                occurred_at: now,
                actor: Actor::System,
                causation: Some(timer.id),
                correlation: None,
            };
            let version = ws.version(*stream)?;
            ws.append(*stream, version, &[event], &meta)?;
        }
        Ok(due.len())
    }

    /// Appends `schedule.fired` for every cron rule whose time came since it last fired (once,
    /// however many times passed while nothing ran).
    fn fire_schedules(
        &self,
        ws: &mut dyn Workspace,
        now: DateTime<Utc>,
    ) -> Result<usize, RobotError> {
        let mut fired = 0;
        for rule in &self.rules.rules {
            let Trigger::Schedule { cron } = &rule.trigger else {
                continue;
            };
            let Ok(schedule) = leadflow_engine::rules::check_cron(cron) else {
                continue;
            };
            let since = match ws.schedule_fired_at(&rule.id)? {
                Some(t) => t,
                None => self.activated_at(ws)?.unwrap_or(now),
            };
            let tz = self.config.calendar.timezone;
            let mut latest = None;
            for t in schedule.after(&since.with_timezone(&tz)) {
                let t = t.with_timezone(&Utc);
                if t > now {
                    break;
                }
                latest = Some(t);
            }
            if let Some(due_at) = latest {
                let version = ws.version(SYSTEM_STREAM)?;
                ws.append(
                    SYSTEM_STREAM,
                    version,
                    &[Event::ScheduleFired(ScheduleFired {
                        rule: rule.id.clone(),
                        due_at,
                    })],
                    &EventMeta::root(now, Actor::System),
                )?;
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// When the rule set in force was activated.
    fn activated_at(&self, ws: &mut dyn Workspace) -> Result<Option<DateTime<Utc>>, RobotError> {
        let version = ws.version(super::RULESET_STREAM)?;
        Ok(ws
            .event_of(super::RULESET_STREAM, version)?
            .and_then(|rec| parse_time(&rec.occurred_at)))
    }

    /// Appends `idle.detected` for every lead or deal an idle rule's wait has passed over
    /// since its last activity (once per quiet spell).
    fn fire_idle(&self, ws: &mut dyn Workspace, now: DateTime<Utc>) -> Result<usize, RobotError> {
        let mut fired = 0;
        for IdleRule {
            rule,
            entity,
            after,
            stages,
        } in self.idle_rules()
        {
            let Some(cutoff) = now.checked_sub_signed(after) else {
                tracing::warn!(rule = %rule.id, "idle rule's wait reaches before the start of time; skipped");
                continue;
            };
            for (id, since) in ws.idle_candidates(entity, &rule.id, cutoff, &stages)? {
                let stream = StreamId::new(entity, id);
                let version = ws.version(stream)?;
                ws.append(
                    stream,
                    version,
                    &[Event::IdleDetected(IdleDetected {
                        rule: rule.id.clone(),
                        since,
                    })],
                    &EventMeta::root(now, Actor::System),
                )?;
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// The earliest pending timer's due time, for `run` to sleep until.
    pub fn next_due<D: Backend>(&self, db: &D) -> Result<Option<DateTime<Utc>>, RobotError> {
        Ok(db.next_timer_due()?)
    }

    /// The idle rules, with the stages they watch.
    fn idle_rules(&self) -> impl Iterator<Item = IdleRule<'_>> {
        self.rules
            .rules
            .iter()
            .filter_map(|rule| match &rule.trigger {
                Trigger::Idle {
                    entity,
                    after,
                    stages,
                } => Some(IdleRule {
                    rule,
                    entity: *entity,
                    after: *after,
                    stages: self.idle_stages(*entity, stages),
                }),
                _ => None,
            })
    }

    /// The stages an idle rule watches: those it names, or every in-progress stage of its
    /// entity's pipelines.
    fn idle_stages(&self, entity: EntityKind, named: &[StageId]) -> Vec<String> {
        if !named.is_empty() {
            return named.iter().map(|s| s.to_string()).collect();
        }
        self.config
            .pipelines
            .iter()
            .filter(|p| p.entity == entity)
            .flat_map(|p| {
                p.stages
                    .iter()
                    .filter(|s| s.semantic == leadflow_engine::config::Semantic::InProgress)
                    .map(|s| s.id.to_string())
            })
            .collect()
    }

    /// When the next lead or deal becomes idle for an idle rule, after `now`.
    pub fn next_idle<D: Backend>(
        &self,
        db: &D,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RobotError> {
        let mut next: Option<DateTime<Utc>> = None;
        for IdleRule {
            rule,
            entity,
            after,
            stages,
        } in self.idle_rules()
        {
            if stages.is_empty() {
                continue;
            }
            let Some(cutoff) = now.checked_sub_signed(after) else {
                tracing::warn!(rule = %rule.id, "idle rule's wait reaches before the start of time; skipped");
                continue;
            };
            if let Some(due) = db
                .oldest_change_after(entity, cutoff, &stages)?
                .and_then(|t| t.checked_add_signed(after))
            {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        Ok(next)
    }

    /// The next moment anything falls due after `now`: a timer, a cron time, an idle rule, or
    /// an external robot's request that its process left.
    pub fn next_wake<D: Backend>(
        &self,
        db: &D,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RobotError> {
        Ok([
            self.next_due(db)?,
            self.next_schedule(now),
            self.next_idle(db, now)?,
            if self.sandboxed {
                None
            } else {
                self.next_request(db)?
            },
        ]
        .into_iter()
        .flatten()
        .min())
    }

    /// Moves a virtual clock from `from` to `to`, ticking at every moment something falls due
    /// on the way, in time order, so each timer fires at its own due time.
    ///
    /// A rule set that keeps scheduling something due at once would never let the clock move:
    /// after [`TICKS_PER_INSTANT`] ticks at one instant the clock jumps to `to`, and
    /// [`Advanced::stuck_at`] says where it stuck.
    pub fn advance<D: Backend>(
        &self,
        db: &mut D,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Advanced, RobotError> {
        let mut out = Advanced::default();
        let mut now = from;
        let mut same = 0;
        while let Some(due) = self.next_wake(db, now)?.filter(|t| *t <= to) {
            let at = due.max(now);
            if at == now {
                same += 1;
                if same > TICKS_PER_INSTANT {
                    out.stuck_at = Some(at);
                    break;
                }
            } else {
                same = 0;
            }
            now = at;
            out.report.add(&self.tick(db, at)?);
        }
        out.report.add(&self.tick(db, to)?);
        Ok(out)
    }

    /// The next cron time of any schedule rule after `now`.
    pub fn next_schedule(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.config.calendar.timezone;
        self.rules
            .rules
            .iter()
            .filter_map(|r| match &r.trigger {
                Trigger::Schedule { cron } => leadflow_engine::rules::check_cron(cron).ok(),
                _ => None,
            })
            .filter_map(|s| s.after(&now.with_timezone(&tz)).next())
            .map(|t| t.with_timezone(&Utc))
            .min()
    }
}
