//! What the projection tables must record for one event, computed purely from the entity's
//! prior state and the event. The store turns a [`Projected`] into SQL; replay and the live
//! path both go through [`project`], so they cannot disagree.

use crate::event::Event;
use crate::ids::{PipelineId, StageId, StreamId};
use crate::model::{self, Entity};
use chrono::{DateTime, Utc};

/// A period an entity spent in a stage, as the `stage_history` table stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageVisit {
    /// The lead or deal.
    pub stream: StreamId,
    /// Its pipeline.
    pub pipeline: PipelineId,
    /// The stage entered.
    pub stage: StageId,
    /// When it was entered.
    pub entered_at: DateTime<Utc>,
}

/// The projection changes of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    /// The entity's new state, to upsert; `None` if the event did not apply.
    pub entity: Option<Entity>,
    /// The stage visit that ended (its `left_at` is the event's time).
    pub left: Option<StreamId>,
    /// The stage visit that began.
    pub entered: Option<StageVisit>,
}

/// Computes the projection changes of `event`, which occurred at `at`, on an entity whose
/// state before it was `prior`.
pub fn project(prior: Option<Entity>, event: &Event, at: DateTime<Utc>) -> Projected {
    let before = prior
        .as_ref()
        .and_then(|e| e.stage().map(|(p, s)| (p.clone(), s.clone())));
    let entity = model::apply(prior, event, at);
    let after = entity
        .as_ref()
        .and_then(|e| e.stage().map(|(p, s)| (p.clone(), s.clone())));
    let stream = entity.as_ref().map(Entity::stream);
    let (left, entered) = match (stream, before, after) {
        (Some(stream), before, Some((pipeline, stage)))
            if before.as_ref() != Some(&(pipeline.clone(), stage.clone())) =>
        {
            (
                before.map(|_| stream),
                Some(StageVisit {
                    stream,
                    pipeline,
                    stage,
                    entered_at: at,
                }),
            )
        }
        _ => (None, None),
    };
    Projected {
        entity,
        left,
        entered,
    }
}
