//! Commands by name: a [`Verb`] (`lead.create`, `task.complete` …) and its named arguments
//! make a [`Command`] — the one mapping from arguments to commands. A scenario step's `do` and
//! `args` come here as they are written; the CLI's `lead create`, `deal move`, `task create` …
//! put their options under the same names and come here too, so which argument becomes which
//! field of a [`NewLead`] (or [`NewDeal`], a move's stage and reason, a task's due time) is
//! decided once.
//!
//! The arguments are JSON: text in quotes, lists of text for `phones` and `emails`, a table for
//! custom `fields`, ids as numbers or stream ids (`lead-3`). Creating takes the fields of the new
//! entity by their names in [`crate::command`]; updating takes `id` and the fields to change
//! (built-in names or custom field ids, passed to the engine as they are); moving `id`, `stage`,
//! `reason`; assigning `id`, `to`; `task.create` `kind`, `title`, `assignee`, `due` (a duration
//! from `now`, `1d` by default; `working_time = true` counts working hours) or `due_at` (a time),
//! `lead`, `deal`; `task.complete` `id`, `result`. A missing, mistyped or unknown argument is an
//! error that names it.
//!
//! Pure: the time comes in as `now`; nothing here reads a clock, a file or prints.

use crate::Command;
use crate::command::{FieldInputs, NewCompany, NewContact, NewDeal, NewLead, NewTask};
use crate::config::Config;
use crate::ids::{EmployeeId, EntityKind, StreamId};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A command by name.
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
    /// Every command, with its name (in scenario files: `do = "lead.create"`).
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

    /// The name, e.g. `lead.create`.
    pub fn as_str(self) -> &'static str {
        Verb::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }

    /// The verb of a name, e.g. `lead.create`.
    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// The kind of entity the command is about.
    pub fn kind(self) -> EntityKind {
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

/// The command of an update verb (`lead.update`, `deal.update`, `contact.update`,
/// `company.update`) for entity `id`: the changes, by built-in name or custom field id, go to
/// the engine as they are (`null` clears a field). `None` for a verb that updates nothing.
pub fn update(verb: Verb, id: i64, changes: FieldInputs) -> Option<Command> {
    Some(match verb {
        Verb::LeadUpdate => Command::UpdateLead { id, changes },
        Verb::DealUpdate => Command::UpdateDeal { id, changes },
        Verb::ContactUpdate => Command::UpdateContact { id, changes },
        Verb::CompanyUpdate => Command::UpdateCompany { id, changes },
        _ => return None,
    })
}

fn from_json<T: serde::de::DeserializeOwned>(map: &Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| e.to_string())
}

/// The command `verb` gives with these named arguments, at time `now` (a task's `due` counts
/// from it); the error names the argument that is missing, mistyped or unknown.
pub fn build(
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
            update(verb, id, changes).expect("an update verb")
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
                (None, Some(t)) => crate::time::parse_time(&t, config.calendar.timezone, None)
                    .map_err(|e| e.to_string())?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG;
    use serde_json::json;

    fn config() -> Config {
        Config::from_toml("leadflow.toml", DEFAULT_CONFIG).expect("the default config loads")
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_verb_is_found_by_its_name() {
        for (name, verb) in Verb::ALL {
            assert_eq!(Verb::parse(name), Some(verb));
            assert_eq!(verb.as_str(), name);
            assert!(name.starts_with(verb.kind().as_str()));
        }
        assert_eq!(Verb::parse("lead.delete"), None);
    }

    #[test]
    fn ids_are_numbers_or_stream_ids_of_the_verbs_kind() {
        let now = at("2026-03-02T10:00:00+03:00");
        let moved = Command::MoveDeal {
            id: 3,
            stage: "won".into(),
            reason: Some("price".into()),
        };
        for id in [json!(3), json!("deal-3")] {
            let a = args(json!({"id": id, "stage": "won", "reason": "price"}));
            assert_eq!(build(Verb::DealMove, &a, now, &config()), Ok(moved.clone()));
        }
        let a = args(json!({"id": "lead-3", "stage": "won"}));
        assert_eq!(
            build(Verb::DealMove, &a, now, &config()),
            Err("argument 'id' names lead-3, but must be a deal".into())
        );
        let a = args(json!({"id": 3, "to": "ivanov", "stage": "won"}));
        assert_eq!(
            build(Verb::LeadAssign, &a, now, &config()),
            Err("unknown argument 'stage'; lead.assign takes: id, to".into())
        );
    }

    #[test]
    fn creating_takes_the_fields_of_the_new_entity_and_updating_passes_changes_on() {
        let now = at("2026-03-02T10:00:00+03:00");
        let a = args(json!({
            "title": "Countertop",
            "phones": ["+7 912 000-00-01"],
            "fields": {"material": "granite"},
            "contact": 2,
        }));
        let Ok(Command::CreateLead(new)) = build(Verb::LeadCreate, &a, now, &config()) else {
            panic!("a lead");
        };
        assert_eq!(new.title.as_deref(), Some("Countertop"));
        assert_eq!(new.phones, ["+7 912 000-00-01"]);
        assert_eq!(new.fields["material"], json!("granite"));
        assert_eq!(new.contact, Some(2));
        let a = args(json!({"id": 1, "name": "Ivan", "material": null}));
        let changes: FieldInputs = [
            ("name".to_owned(), json!("Ivan")),
            ("material".to_owned(), Value::Null),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            build(Verb::LeadUpdate, &a, now, &config()),
            Ok(Command::UpdateLead { id: 1, changes })
        );
        assert_eq!(update(Verb::TaskComplete, 1, FieldInputs::new()), None);
    }

    #[test]
    fn a_task_is_due_a_day_from_now_unless_told_otherwise() {
        let now = at("2026-03-02T10:00:00+03:00");
        let base = json!({"kind": "call", "title": "call back", "assignee": "ivanov"});
        let due = |extra: Value| {
            let mut a = args(base.clone());
            a.extend(args(extra));
            match build(Verb::TaskCreate, &a, now, &config()) {
                Ok(Command::CreateTask(t)) => Ok(t.due_at),
                Ok(other) => panic!("{other:?}"),
                Err(m) => Err(m),
            }
        };
        assert_eq!(due(json!({})), Ok(now + chrono::Duration::days(1)));
        assert_eq!(
            due(json!({"due": "2h"})),
            Ok(now + chrono::Duration::hours(2))
        );
        assert_eq!(
            due(json!({"due_at": "2026-03-10T09:30:00+03:00"})),
            Ok(at("2026-03-10T09:30:00+03:00"))
        );
        assert_eq!(
            due(json!({"due": "2h", "due_at": "2026-03-10T09:30:00+03:00"})),
            Err("give 'due' (a duration from now) or 'due_at' (a time), not both".into())
        );
    }
}
