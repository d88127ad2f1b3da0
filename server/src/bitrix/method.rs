//! The method of a call, from the last part of its path: case-insensitive, with or without
//! `.json` (`crm.lead.Add.json` is `crm.lead.add`).

use super::error::Error;
use leadflow_engine::EntityKind;
use std::fmt;

/// What a `crm.<entity>.*` method does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `add`: create, answers the new id.
    Add,
    /// `update`: change, answers `true`.
    Update,
    /// `get`: one record.
    Get,
    /// `list`: a page of records.
    List,
    /// `delete`: answers `true`.
    Delete,
    /// `fields`: the field descriptions.
    Fields,
}

/// Every method the facade serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `crm.lead.*`, `crm.deal.*`, `crm.contact.*`, `crm.company.*`.
    Crm(EntityKind, Op),
    /// `crm.status.list`: lead statuses, deal stages per category, sources.
    StatusList,
    /// `crm.category.list`: the deal pipelines.
    CategoryList,
    /// `crm.stagehistory.list`: the stages a lead or deal went through.
    StageHistoryList,
    /// `crm.timeline.comment.add`: a comment on a lead, deal, contact or company.
    TimelineCommentAdd,
    /// `user.current`: the webhook's user.
    UserCurrent,
    /// `batch`: up to 50 calls.
    Batch,
    /// `event.bind`: subscribe a handler URL to an event.
    EventBind,
    /// `event.unbind`: remove subscriptions.
    EventUnbind,
    /// `event.get`: the subscriptions.
    EventGet,
}

impl Method {
    /// Every method, for tests and documentation.
    pub fn all() -> Vec<Method> {
        let mut out = Vec::new();
        for kind in ENTITIES {
            for op in [
                Op::Add,
                Op::Update,
                Op::Get,
                Op::List,
                Op::Delete,
                Op::Fields,
            ] {
                out.push(Method::Crm(kind, op));
            }
        }
        out.extend([
            Method::StatusList,
            Method::CategoryList,
            Method::StageHistoryList,
            Method::TimelineCommentAdd,
            Method::UserCurrent,
            Method::Batch,
            Method::EventBind,
            Method::EventUnbind,
            Method::EventGet,
        ]);
        out
    }

    /// The method named by the last part of a path (`crm.lead.Add.json`, `/batch`), or
    /// `ERROR_METHOD_NOT_FOUND`.
    pub fn parse(path: &str) -> Result<Method, Error> {
        let name = path.trim().trim_matches('/').to_ascii_lowercase();
        let name = name.strip_suffix(".json").unwrap_or(&name);
        let m = match name {
            "crm.status.list" => Method::StatusList,
            "crm.category.list" => Method::CategoryList,
            "crm.stagehistory.list" => Method::StageHistoryList,
            "crm.timeline.comment.add" => Method::TimelineCommentAdd,
            "user.current" => Method::UserCurrent,
            "batch" => Method::Batch,
            "event.bind" => Method::EventBind,
            "event.unbind" => Method::EventUnbind,
            "event.get" => Method::EventGet,
            other => {
                let mut parts = other.split('.');
                let (Some("crm"), Some(entity), Some(op), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(Error::MethodNotFound);
                };
                let kind = ENTITIES
                    .into_iter()
                    .find(|k| k.as_str() == entity)
                    .ok_or(Error::MethodNotFound)?;
                let op = match op {
                    "add" => Op::Add,
                    "update" => Op::Update,
                    "get" => Op::Get,
                    "list" => Op::List,
                    "delete" => Op::Delete,
                    "fields" => Op::Fields,
                    _ => return Err(Error::MethodNotFound),
                };
                Method::Crm(kind, op)
            }
        };
        Ok(m)
    }

    /// Whether the method only reads.
    pub fn is_read(self) -> bool {
        match self {
            Method::Crm(_, op) => matches!(op, Op::Get | Op::List | Op::Fields),
            Method::StatusList
            | Method::CategoryList
            | Method::StageHistoryList
            | Method::UserCurrent
            | Method::EventGet => true,
            // A batch is as much a write as its commands: each is checked on its own.
            Method::Batch
            | Method::TimelineCommentAdd
            | Method::EventBind
            | Method::EventUnbind => false,
        }
    }
}

/// The entities of `crm.<entity>.*`.
pub(crate) const ENTITIES: [EntityKind; 4] = [
    EntityKind::Lead,
    EntityKind::Deal,
    EntityKind::Contact,
    EntityKind::Company,
];

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Crm(kind, op) => {
                let op = match op {
                    Op::Add => "add",
                    Op::Update => "update",
                    Op::Get => "get",
                    Op::List => "list",
                    Op::Delete => "delete",
                    Op::Fields => "fields",
                };
                write!(f, "crm.{kind}.{op}")
            }
            Method::StatusList => f.write_str("crm.status.list"),
            Method::CategoryList => f.write_str("crm.category.list"),
            Method::StageHistoryList => f.write_str("crm.stagehistory.list"),
            Method::TimelineCommentAdd => f.write_str("crm.timeline.comment.add"),
            Method::UserCurrent => f.write_str("user.current"),
            Method::Batch => f.write_str("batch"),
            Method::EventBind => f.write_str("event.bind"),
            Method::EventUnbind => f.write_str("event.unbind"),
            Method::EventGet => f.write_str("event.get"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_match_in_any_case_with_or_without_json() {
        let lead_add = Method::Crm(EntityKind::Lead, Op::Add);
        for path in [
            "crm.lead.add",
            "crm.lead.Add.json",
            "CRM.LEAD.ADD",
            "/crm.lead.add.JSON",
        ] {
            assert_eq!(Method::parse(path), Ok(lead_add), "{path}");
        }
        assert_eq!(Method::parse("batch.json"), Ok(Method::Batch));
        assert_eq!(
            Method::parse("crm.deal.List"),
            Ok(Method::Crm(EntityKind::Deal, Op::List))
        );
    }

    #[test]
    fn every_method_reads_back_from_its_name() {
        for m in Method::all() {
            assert_eq!(Method::parse(&m.to_string()), Ok(m));
            assert_eq!(Method::parse(&format!("{m}.json")), Ok(m));
        }
        assert_eq!(Method::all().len(), 33);
    }

    #[test]
    fn unknown_methods_are_not_found() {
        for path in [
            "crm.lead.merge",
            "crm.task.add",
            "crm.lead",
            "",
            "crm.lead.add.xml",
            "tasks.task.add",
            "crm.lead.add.json.json",
        ] {
            assert_eq!(Method::parse(path), Err(Error::MethodNotFound), "{path}");
        }
    }
}
