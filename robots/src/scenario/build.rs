//! The commands a step can give ([`Verb`]) and the command a step's `args` make.

use chrono::{DateTime, Utc};
use leadflow_engine::command::{NewCompany, NewContact, NewDeal, NewLead, NewTask};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::{Command, Config, EntityKind, StreamId};
use serde_json::{Map, Value};

/// A command a step can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `lead.create`
    LeadCreate,
    /// `lead.update`
    LeadUpdate,
    /// `lead.move`
    LeadMove,
    /// `lead.assign`
    LeadAssign,
    /// `deal.create`
    DealCreate,
    /// `deal.update`
    DealUpdate,
    /// `deal.move`
    DealMove,
    /// `deal.assign`
    DealAssign,
    /// `contact.create`
    ContactCreate,
    /// `contact.update`
    ContactUpdate,
    /// `company.create`
    CompanyCreate,
    /// `company.update`
    CompanyUpdate,
    /// `task.create`
    TaskCreate,
    /// `task.complete`
    TaskComplete,
}

impl Verb {
    /// Every command, with its name in scenario files.
    pub const ALL: [(&'static str, Verb); 14] = [
        ("lead.create", Verb::LeadCreate),
        ("lead.update", Verb::LeadUpdate),
        ("lead.move", Verb::LeadMove),
        ("lead.assign", Verb::LeadAssign),
        ("deal.create", Verb::DealCreate),
        ("deal.update", Verb::DealUpdate),
        ("deal.move", Verb::DealMove),
        ("deal.assign", Verb::DealAssign),
        ("contact.create", Verb::ContactCreate),
        ("contact.update", Verb::ContactUpdate),
        ("company.create", Verb::CompanyCreate),
        ("company.update", Verb::CompanyUpdate),
        ("task.create", Verb::TaskCreate),
        ("task.complete", Verb::TaskComplete),
    ];

    /// The name in scenario files, e.g. `lead.create`.
    pub fn as_str(self) -> &'static str {
        Verb::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }

    pub(super) fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    pub(super) fn kind(self) -> EntityKind {
        use Verb as V;
        match self {
            V::LeadCreate | V::LeadUpdate | V::LeadMove | V::LeadAssign => EntityKind::Lead,
            V::DealCreate | V::DealUpdate | V::DealMove | V::DealAssign => EntityKind::Deal,
            V::ContactCreate | V::ContactUpdate => EntityKind::Contact,
            V::CompanyCreate | V::CompanyUpdate => EntityKind::Company,
            V::TaskCreate | V::TaskComplete => EntityKind::Task,
        }
    }
}

/// Arguments being taken one by one; what is left over is an error.
struct Args<'a> {
    verb: Verb,
    map: Map<String, Value>,
    takes: &'a [&'a str],
}

impl Args<'_> {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "argument '{key}' must be text in quotes, not {other}"
            )),
        }
    }

    fn required_text(&mut self, key: &str) -> Result<String, String> {
        self.text(key)?
            .ok_or_else(|| format!("argument '{key}' is missing"))
    }

    fn id(&mut self, key: &str, kind: EntityKind) -> Result<Option<i64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|i| *i > 0)
                .map(Some)
                .ok_or_else(|| format!("argument '{key}' must be an id above 0, not {n}")),
            Some(Value::String(s)) => {
                let stream: StreamId = s.parse()?;
                if stream.kind != kind {
                    return Err(format!(
                        "argument '{key}' names {stream}, but must be a {kind}"
                    ));
                }
                Ok(Some(stream.id))
            }
            Some(other) => Err(format!(
                "argument '{key}' must be an id like 3 or \"{kind}-3\", not {other}"
            )),
        }
    }

    fn required_id(&mut self) -> Result<i64, String> {
        self.id("id", self.verb.kind())?
            .ok_or_else(|| "argument 'id' is missing".to_owned())
    }

    /// Fails on arguments nobody took.
    fn done(self) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "unknown argument '{k}'; {} takes: {}",
                self.verb.as_str(),
                self.takes.join(", ")
            )),
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(map: &Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| e.to_string())
}

/// The command a step gives, at virtual time `now`.
pub(super) fn build(
    verb: Verb,
    args: &Map<String, Value>,
    now: DateTime<Utc>,
    config: &Config,
) -> Result<Command, String> {
    use Verb as V;
    let mut a = Args {
        verb,
        map: args.clone(),
        takes: &[],
    };
    Ok(match verb {
        V::LeadCreate => Command::CreateLead(from_json::<NewLead>(args)?),
        V::DealCreate => Command::CreateDeal(from_json::<NewDeal>(args)?),
        V::ContactCreate => Command::CreateContact(from_json::<NewContact>(args)?),
        V::CompanyCreate => Command::CreateCompany(from_json::<NewCompany>(args)?),
        V::LeadUpdate | V::DealUpdate | V::ContactUpdate | V::CompanyUpdate => {
            let id = a.required_id()?;
            let changes = std::mem::take(&mut a.map).into_iter().collect();
            match verb {
                V::LeadUpdate => Command::UpdateLead { id, changes },
                V::DealUpdate => Command::UpdateDeal { id, changes },
                V::ContactUpdate => Command::UpdateContact { id, changes },
                _ => Command::UpdateCompany { id, changes },
            }
        }
        V::LeadMove | V::DealMove => {
            a.takes = &["id", "stage", "reason"];
            let id = a.required_id()?;
            let stage = a.required_text("stage")?.as_str().into();
            let reason = a.text("reason")?;
            a.done()?;
            if verb == V::LeadMove {
                Command::MoveLead { id, stage, reason }
            } else {
                Command::MoveDeal { id, stage, reason }
            }
        }
        V::LeadAssign | V::DealAssign => {
            a.takes = &["id", "to"];
            let id = a.required_id()?;
            let to = EmployeeId(a.required_text("to")?);
            a.done()?;
            if verb == V::LeadAssign {
                Command::AssignLead { id, to }
            } else {
                Command::AssignDeal { id, to }
            }
        }
        V::TaskCreate => {
            a.takes = &[
                "kind",
                "title",
                "assignee",
                "due",
                "working_time",
                "due_at",
                "lead",
                "deal",
            ];
            let kind = a.required_text("kind")?;
            let title = a.required_text("title")?;
            let assignee = EmployeeId(a.required_text("assignee")?);
            let working = match a.take("working_time") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(other) => {
                    return Err(format!(
                        "argument 'working_time' must be true or false, not {other}"
                    ));
                }
            };
            let due_at = match (a.text("due")?, a.text("due_at")?) {
                (Some(_), Some(_)) => {
                    return Err(
                        "give 'due' (a duration from now) or 'due_at' (a time), not both".into(),
                    );
                }
                (None, Some(t)) => {
                    leadflow_engine::time::parse_time(&t, config.calendar.timezone, None)
                        .map_err(|e| e.to_string())?
                }
                (due, None) => {
                    config
                        .calendar
                        .after(now, due.as_deref().unwrap_or("1d"), working)?
                }
            };
            let lead = a.id("lead", EntityKind::Lead)?;
            let deal = a.id("deal", EntityKind::Deal)?;
            a.done()?;
            Command::CreateTask(NewTask {
                kind,
                title,
                assignee,
                due_at,
                lead,
                deal,
            })
        }
        V::TaskComplete => {
            a.takes = &["id", "result"];
            let id = a.required_id()?;
            let result = a.text("result")?;
            a.done()?;
            Command::CompleteTask { id, result }
        }
    })
}
