//! Decisions, given/when/then: the state a command meets, the command, and the events or the
//! rejection that come out. No storage: state is folded with `model::apply`.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::command::NewToken;
use leadflow_engine::command::{NewCompany, NewDeal, NewLead, NewTask};
use leadflow_engine::decide::{TokenState, check_actor};
use leadflow_engine::{
    Actor, Command, Config, Entity, EntityKind, Event, Lookup, Rejection, StreamId, decide, model,
};
use std::collections::BTreeMap;

struct World {
    config: Config,
    entities: BTreeMap<StreamId, Entity>,
    next: BTreeMap<EntityKind, i64>,
    /// Tokens by stream: name, version, revoked.
    tokens: BTreeMap<StreamId, (String, i64, bool)>,
}

impl Lookup for World {
    fn exists(&self, stream: StreamId) -> bool {
        self.entities.contains_key(&stream)
    }

    fn token(&self, name: &str) -> Option<TokenState> {
        self.tokens
            .iter()
            .filter(|(_, (n, _, _))| n == name)
            .map(|(stream, (_, version, revoked))| TokenState {
                stream: *stream,
                version: *version,
                revoked: *revoked,
            })
            .min_by_key(|t| (t.revoked, -t.stream.id))
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

impl World {
    fn new() -> World {
        let mut text = leadflow_engine::config::DEFAULT_CONFIG.to_owned();
        text.push_str("\n[[employees]]\nid = \"retired\"\nname = \"Retired\"\nteam = \"first_line\"\nactive = false\n");
        World {
            config: Config::from_toml("leadflow.toml", &text).unwrap(),
            entities: BTreeMap::new(),
            next: BTreeMap::new(),
            tokens: BTreeMap::new(),
        }
    }

    /// Decides and, on success, applies the events.
    fn when(&mut self, cmd: Command) -> Result<Vec<Event>, Rejection> {
        let stream = match cmd.target() {
            leadflow_engine::command::Target::New(kind) => {
                let n = self.next.entry(kind).or_insert(1);
                StreamId::new(kind, *n)
            }
            leadflow_engine::command::Target::Existing(s) => s,
            leadflow_engine::command::Target::Token(name) => match self.token(name) {
                Some(t) => t.stream,
                None => StreamId::new(
                    EntityKind::Token,
                    *self.next.get(&EntityKind::Token).unwrap_or(&1),
                ),
            },
        };
        let current = self.entities.get(&stream).cloned();
        let decision = decide(&self.config, &cmd, stream, current.as_ref(), self)?;
        let stream = decision.stream;
        for e in &decision.events {
            match e {
                Event::TokenCreated(t) => {
                    self.tokens.insert(stream, (t.name.clone(), 1, false));
                    *self.next.entry(EntityKind::Token).or_insert(1) += 1;
                }
                Event::TokenRevoked(_) => {
                    if let Some(t) = self.tokens.get_mut(&stream) {
                        t.1 += 1;
                        t.2 = true;
                    }
                }
                _ => {}
            }
        }
        let mut state = current;
        for e in &decision.events {
            state = model::apply(state, e, at());
        }
        if let Some(s) = state {
            self.entities.insert(stream, s);
            if current_is_new(&cmd) {
                *self.next.get_mut(&stream.kind).unwrap() += 1;
            }
        }
        Ok(decision.events)
    }

    fn given(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            self.when(c.clone())
                .unwrap_or_else(|r| panic!("given {c:?}: {r}"));
        }
    }

    fn lead_in_work() -> World {
        let mut w = World::new();
        w.given(vec![
            Command::CreateLead(NewLead {
                name: Some("Ivan".into()),
                phones: vec!["89120000001".into()],
                ..Default::default()
            }),
            Command::AssignLead {
                id: 1,
                to: "ivanov".into(),
            },
            Command::MoveLead {
                id: 1,
                stage: "in_work".into(),
                reason: None,
            },
        ]);
        w
    }
}

fn current_is_new(cmd: &Command) -> bool {
    matches!(cmd.target(), leadflow_engine::command::Target::New(_))
}

fn rejection(w: &mut World, cmd: Command) -> String {
    w.when(cmd).unwrap_err().to_string()
}

#[test]
fn a_new_lead_starts_in_the_first_stage_with_normalised_contacts() {
    let mut w = World::new();
    let events = w
        .when(Command::CreateLead(NewLead {
            phones: vec!["8 (912) 000-00-01".into(), "+7 912 000 00 01".into()],
            emails: vec!["Ivan@Example.RU".into()],
            ..Default::default()
        }))
        .unwrap();
    let Event::LeadCreated(c) = &events[0] else {
        panic!()
    };
    assert_eq!(c.stage.as_str(), "new");
    assert_eq!(
        c.phones,
        vec!["+79120000001"],
        "the same number twice is kept once"
    );
    assert_eq!(c.emails, vec!["ivan@example.ru"]);
    assert_eq!(
        c.title, "+79120000001",
        "without a title or name, the phone names the lead"
    );
    assert_eq!(c.source, "manual");
}

#[test]
fn a_failure_stage_with_reasons_needs_a_known_reason() {
    let mut w = World::lead_in_work();
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 1,
                stage: "junk".into(),
                reason: None
            }
        ),
        "stage 'junk' needs a reason, one of: spam, duplicate, existing_client, not_target, no_answer"
    );
    assert!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 1,
                stage: "junk".into(),
                reason: Some("boredom".into())
            }
        )
        .starts_with("unknown reason 'boredom' for stage 'junk'")
    );
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 1,
                stage: "new".into(),
                reason: Some("why not".into())
            }
        ),
        "stage 'new' takes no reason: only failure stages with reasons do"
    );
    let events = w
        .when(Command::MoveLead {
            id: 1,
            stage: "junk".into(),
            reason: Some("spam".into()),
        })
        .unwrap();
    assert!(
        matches!(&events[0], Event::LeadStageChanged(s) if s.reason.as_deref() == Some("spam"))
    );
}

#[test]
fn a_junk_lead_can_be_reopened_but_a_converted_one_cannot() {
    let mut w = World::lead_in_work();
    w.given(vec![Command::MoveLead {
        id: 1,
        stage: "junk".into(),
        reason: Some("no_answer".into()),
    }]);
    w.given(vec![Command::MoveLead {
        id: 1,
        stage: "in_work".into(),
        reason: None,
    }]);
    w.given(vec![
        Command::UpdateLead {
            id: 1,
            changes: [
                ("material", "granite"),
                ("dimensions", "1x1"),
                ("budget", "1"),
                ("urgency", "later"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
            .collect(),
        },
        Command::MoveLead {
            id: 1,
            stage: "qualified".into(),
            reason: None,
        },
        Command::MoveLead {
            id: 1,
            stage: "converted".into(),
            reason: None,
        },
    ]);
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 1,
                stage: "in_work".into(),
                reason: None
            }
        ),
        "cannot move lead-1 from 'converted' to 'in_work': 'converted' is a success stage and closes the lead"
    );
}

#[test]
fn moving_to_the_current_stage_is_refused() {
    let mut w = World::lead_in_work();
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 1,
                stage: "in_work".into(),
                reason: None
            }
        ),
        "lead-1 is already in stage 'in_work'"
    );
}

#[test]
fn inactive_employees_cannot_act_or_be_given_work() {
    let mut w = World::lead_in_work();
    assert_eq!(
        rejection(
            &mut w,
            Command::AssignLead {
                id: 1,
                to: "retired".into()
            }
        ),
        "employee 'retired' is inactive and cannot be given work"
    );
    assert!(check_actor(&w.config, &Actor::Employee("retired".into())).is_err());
    assert!(check_actor(&w.config, &Actor::Employee("nobody".into())).is_err());
    assert!(check_actor(&w.config, &Actor::System).is_ok());
}

#[test]
fn an_api_actor_may_act_only_for_a_known_active_employee() {
    let w = World::new();
    let api_for = |e: &str| Actor::Api {
        token: "crm".into(),
        employee: Some(e.into()),
    };
    assert!(check_actor(&w.config, &api_for("ivanov")).is_ok());
    assert!(check_actor(&w.config, &Actor::api("site-form")).is_ok());
    assert_eq!(
        check_actor(&w.config, &api_for("nobody"))
            .unwrap_err()
            .to_string(),
        "unknown employee 'nobody'"
    );
    assert!(check_actor(&w.config, &api_for("retired")).is_err());
}

#[test]
fn assigning_the_current_responsible_changes_nothing() {
    let mut w = World::lead_in_work();
    assert_eq!(
        w.when(Command::AssignLead {
            id: 1,
            to: "ivanov".into()
        })
        .unwrap(),
        vec![]
    );
}

#[test]
fn an_update_records_only_what_changed() {
    let mut w = World::lead_in_work();
    let mut changes = BTreeMap::new();
    changes.insert("name".to_owned(), serde_json::Value::from("Ivan"));
    changes.insert(
        "phones".to_owned(),
        serde_json::Value::from("+7 912 000 00 01; 8 912 000 00 02"),
    );
    let events = w.when(Command::UpdateLead { id: 1, changes }).unwrap();
    let Event::LeadUpdated(u) = &events[0] else {
        panic!()
    };
    assert_eq!(u.changes.len(), 1, "{u:?}");
    assert_eq!(
        u.changes["phones"],
        serde_json::json!(["+79120000001", "+79120000002"])
    );
}

#[test]
fn dropping_a_leads_second_phone_or_email_is_a_change() {
    let mut w = World::lead_in_work();
    let mut changes = BTreeMap::new();
    changes.insert(
        "phones".to_owned(),
        serde_json::json!(["+79120000001", "+79120000002"]),
    );
    changes.insert("emails".to_owned(), serde_json::json!(["a@b.ru", "c@d.ru"]));
    w.given(vec![Command::UpdateLead { id: 1, changes }]);
    let mut changes = BTreeMap::new();
    changes.insert("phones".to_owned(), serde_json::json!(["+79120000001"]));
    changes.insert("emails".to_owned(), serde_json::json!(["a@b.ru"]));
    let events = w.when(Command::UpdateLead { id: 1, changes }).unwrap();
    let [Event::LeadUpdated(u)] = &events[..] else {
        panic!("no update: {events:?}")
    };
    assert_eq!(u.changes["phones"], serde_json::json!(["+79120000001"]));
    assert_eq!(u.changes["emails"], serde_json::json!(["a@b.ru"]));
}

#[test]
fn the_responsible_and_the_stage_are_not_plain_fields() {
    let mut w = World::lead_in_work();
    for (field, hint) in [
        ("responsible", "use `lead assign`"),
        ("stage", "use `lead move`"),
        ("source", ""),
    ] {
        let changes = [(field.to_owned(), serde_json::Value::from("x"))]
            .into_iter()
            .collect();
        let r = rejection(&mut w, Command::UpdateLead { id: 1, changes });
        if field == "source" {
            assert!(
                r.starts_with("unknown source 'x'; known sources: web_form"),
                "{r}"
            );
        } else {
            assert!(r.contains(hint), "{r}");
        }
    }
}

#[test]
fn a_task_is_completed_once() {
    let mut w = World::lead_in_work();
    w.given(vec![Command::CreateTask(NewTask {
        kind: "call".into(),
        title: "call back".into(),
        assignee: "ivanov".into(),
        due_at: at(),
        lead: Some(1),
        deal: None,
    })]);
    w.given(vec![Command::CompleteTask {
        id: 1,
        result: None,
    }]);
    assert_eq!(
        rejection(
            &mut w,
            Command::CompleteTask {
                id: 1,
                result: None
            }
        ),
        "task-1 is already completed"
    );
    assert!(
        rejection(
            &mut w,
            Command::CreateTask(NewTask {
                kind: "dance".into(),
                title: "x".into(),
                assignee: "ivanov".into(),
                due_at: at(),
                lead: None,
                deal: None
            })
        )
        .contains("unknown task kind 'dance'")
    );
}

#[test]
fn commands_on_missing_entities_are_refused() {
    let mut w = World::new();
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveLead {
                id: 7,
                stage: "in_work".into(),
                reason: None
            }
        ),
        "lead-7 does not exist"
    );
    assert_eq!(
        rejection(
            &mut w,
            Command::CompleteTask {
                id: 2,
                result: None
            }
        ),
        "task-2 does not exist"
    );
}

#[test]
fn a_deal_needs_its_stage_requirements_and_a_team_member() {
    let mut w = World::new();
    w.given(vec![Command::CreateCompany(NewCompany {
        name: "OOO Kamen".into(),
        inn: Some("7707083893".into()),
        ..Default::default()
    })]);
    w.given(vec![Command::CreateDeal(NewDeal {
        title: "Kitchen".into(),
        pipeline: Some("goods".into()),
        ..Default::default()
    })]);
    assert_eq!(
        rejection(
            &mut w,
            Command::MoveDeal {
                id: 1,
                stage: "invoice".into(),
                reason: None
            }
        ),
        "deal-1 cannot enter stage 'invoice': missing required fields: amount, contact or company"
    );
    assert_eq!(
        rejection(
            &mut w,
            Command::AssignDeal {
                id: 1,
                to: "morozova".into()
            }
        ),
        "employee 'morozova' is not in team 'goods', which works pipeline 'goods'"
    );
    w.given(vec![Command::UpdateDeal {
        id: 1,
        changes: [
            ("amount".to_owned(), serde_json::Value::from("99 000,50")),
            ("company".to_owned(), serde_json::Value::from(1)),
        ]
        .into_iter()
        .collect(),
    }]);
    let Some(Entity::Deal(d)) = w.entities.get(&StreamId::new(EntityKind::Deal, 1)) else {
        panic!()
    };
    assert_eq!(d.amount, Some(9_900_050));
    w.given(vec![Command::MoveDeal {
        id: 1,
        stage: "invoice".into(),
        reason: None,
    }]);
    assert!(
        rejection(
            &mut w,
            Command::CreateDeal(NewDeal {
                title: "X".into(),
                amount: Some("-5".into()),
                ..Default::default()
            })
        )
        .contains("must not be negative")
    );
    assert!(
        rejection(
            &mut w,
            Command::CreateDeal(NewDeal {
                title: "X".into(),
                stage: Some("won".into()),
                ..Default::default()
            })
        )
        .contains("cannot start in a closing stage")
    );
}

/// A sample payload of every bookkeeping event type (`is_activity` false).
const BOOKKEEPING: &[(&str, &str)] = &[
    (
        "idle.detected",
        r#"{"rule":"r","since":"2026-03-02T09:00:00Z"}"#,
    ),
    ("ruleset.activated", r#"{"hash":"h","files":[]}"#),
    (
        "deadline.scheduled",
        r#"{"name":"n","due_at":"2026-03-02T09:00:00Z","rule":"r","ruleset":"h"}"#,
    ),
    (
        "deadline.cancelled",
        r#"{"name":"n","scheduled":1,"reason":"x"}"#,
    ),
    (
        "deadline.elapsed",
        r#"{"name":"n","scheduled":1,"due_at":"2026-03-02T09:00:00Z"}"#,
    ),
    (
        "robots.delayed",
        r#"{"rule":"r","ruleset":"h","due_at":"2026-03-02T09:00:00Z","trigger":1,"robots":[]}"#,
    ),
    ("robots.resumed", r#"{"delayed":1}"#),
    ("robots.cancelled", r#"{"delayed":1,"reason":"x"}"#),
    (
        "incident.recorded",
        r#"{"kind":"k","employee":"ivanov","text":"t"}"#,
    ),
    (
        "escalation.recorded",
        r#"{"employee":"ivanov","manager":"smirnova","kind":"k","count":3,"window":"30d","rule":"r"}"#,
    ),
    (
        "notification.queued",
        r#"{"channel":"inbox","to":"ivanov","text":"t","key":"k"}"#,
    ),
    (
        "schedule.fired",
        r#"{"rule":"r","due_at":"2026-03-02T09:00:00Z"}"#,
    ),
    (
        "report.sent",
        r#"{"to":["smirnova"],"since":"2026-03-02T09:00:00Z","until":"2026-03-02T09:00:00Z","rows":[],"rule":"r"}"#,
    ),
    ("task.overdue", r#"{"due_at":"2026-03-02T09:00:00Z"}"#),
    (
        "notification.read",
        r#"{"notification":1,"employee":"ivanov"}"#,
    ),
];

/// The store projects bookkeeping events without loading the entity (it only adds to the
/// version), so the model must do exactly that to every kind of entity.
#[test]
fn bookkeeping_events_change_nothing_but_the_version() {
    let mut w = World::lead_in_work();
    w.given(vec![
        Command::CreateTask(NewTask {
            kind: "call".into(),
            title: "call back".into(),
            assignee: "ivanov".into(),
            due_at: at(),
            lead: Some(1),
            deal: None,
        }),
        Command::CreateCompany(NewCompany {
            name: "OOO Stone".into(),
            ..Default::default()
        }),
        Command::CreateContact(leadflow_engine::command::NewContact {
            name: "Olga".into(),
            ..Default::default()
        }),
        Command::CreateDeal(NewDeal {
            title: "Countertop".into(),
            pipeline: Some("goods".into()),
            ..Default::default()
        }),
    ]);
    assert_eq!(w.entities.len(), 5, "one entity of every kind");
    let bookkeeping: Vec<&str> = Event::TYPES
        .iter()
        .map(|(ty, _)| *ty)
        .filter(|ty| BOOKKEEPING.iter().any(|(t, _)| t == ty))
        .collect();
    assert_eq!(
        bookkeeping.len(),
        BOOKKEEPING.len(),
        "every sample is a known event type"
    );
    for (ty, payload) in BOOKKEEPING {
        let event = Event::decode(ty, 1, payload).unwrap_or_else(|e| panic!("{ty}: {e}"));
        assert!(!event.is_activity(), "{ty} is bookkeeping");
        for entity in w.entities.values() {
            let mut expected = entity.clone();
            expected.add_version(1);
            let later = at() + chrono::Duration::hours(1);
            assert_eq!(
                model::apply(Some(entity.clone()), &event, later),
                Some(expected),
                "{ty} on {}",
                entity.stream()
            );
        }
    }
}

fn new_token(name: &str, role: &str, employee: Option<&str>) -> Command {
    Command::CreateToken(NewToken {
        name: name.into(),
        role: role.into(),
        employee: employee.map(Into::into),
        secret_hash: "ab".repeat(32),
        note: Some("  the site  ".into()),
    })
}

#[test]
fn a_token_is_created_with_its_role_employee_and_hash_and_revoked_by_name() {
    let mut w = World::new();
    let events = w
        .when(new_token("crm.sync-1", "sales", Some("kuznetsov")))
        .unwrap();
    assert_eq!(
        events,
        [Event::TokenCreated(leadflow_engine::event::TokenCreated {
            name: "crm.sync-1".into(),
            role: "sales".into(),
            employee: Some("kuznetsov".into()),
            secret_hash: "ab".repeat(32),
            note: Some("the site".into()),
        })]
    );
    let revoke = || Command::RevokeToken {
        name: "crm.sync-1".into(),
    };
    assert_eq!(
        w.when(revoke()).unwrap(),
        [Event::TokenRevoked(leadflow_engine::event::TokenRevoked {
            name: "crm.sync-1".into()
        })]
    );
    assert_eq!(
        rejection(&mut w, revoke()),
        "token 'crm.sync-1' is already revoked"
    );
    // A revoked token's name may be used again.
    assert!(w.when(new_token("crm.sync-1", "admin", None)).is_ok());
}

#[test]
fn token_commands_name_what_is_wrong() {
    let mut w = World::new();
    w.given(vec![new_token("site", "intake", None)]);
    assert_eq!(
        rejection(&mut w, new_token("site", "admin", None)),
        "a token named 'site' exists already; revoke it first or choose another name"
    );
    assert_eq!(
        rejection(&mut w, new_token("crm", "root", None)),
        "unknown role 'root'; the configuration defines: admin, auditor, designer, first_line, head_of_sales, intake, sales"
    );
    assert_eq!(
        rejection(&mut w, new_token("crm", "sales", Some("ghost"))),
        "unknown employee 'ghost'"
    );
    assert_eq!(
        rejection(&mut w, new_token("crm", "sales", Some("retired"))),
        "employee 'retired' is inactive and cannot be given work"
    );
    for bad in ["", "Site", "-site", "a b", "site/1", &"x".repeat(65)] {
        assert!(
            rejection(&mut w, new_token(bad, "admin", None))
                .starts_with(&format!("token name '{bad}' must")),
            "{bad}"
        );
    }
    assert!(w.when(new_token(&"x".repeat(64), "admin", None)).is_ok());
    let mut bad_hash = new_token("h", "admin", None);
    if let Command::CreateToken(t) = &mut bad_hash {
        t.secret_hash = "not a hash".into();
    }
    assert!(rejection(&mut w, bad_hash).starts_with("field 'secret_hash'"));
    assert_eq!(
        rejection(
            &mut w,
            Command::RevokeToken {
                name: "nobody".into()
            }
        ),
        "unknown token 'nobody'; `leadflow token list` shows the tokens"
    );
}

#[test]
fn a_timeline_comment_is_its_own_event_and_changes_no_field() {
    let mut w = World::lead_in_work();
    let lead = StreamId::new(EntityKind::Lead, 1);
    let before = w.entities[&lead].clone();
    let events = w
        .when(Command::Comment {
            stream: lead,
            text: "  called back, wants a quote \n".into(),
        })
        .unwrap();
    assert_eq!(
        events,
        vec![Event::LeadCommented(leadflow_engine::event::Commented {
            text: "called back, wants a quote".into()
        })]
    );
    let mut after = w.entities[&lead].clone();
    assert_eq!(after.version(), before.version() + 1);
    after.add_version(-1);
    assert_eq!(after, before, "a comment changes no field");
    assert!(events[0].is_activity());

    for (stream, text, needle) in [
        (lead, "   ", "field 'comment': is empty"),
        (
            lead,
            &"я".repeat(10_001)[..],
            "10001 characters long; at most 10000",
        ),
        (
            StreamId::new(EntityKind::Lead, 9),
            "x",
            "lead-9 does not exist",
        ),
        (
            StreamId::new(EntityKind::Deal, 1),
            "x",
            "deal-1 does not exist",
        ),
        (
            StreamId::new(EntityKind::Task, 1),
            "x",
            "comments go on leads, deals",
        ),
    ] {
        let r = rejection(
            &mut w,
            Command::Comment {
                stream,
                text: text.into(),
            },
        );
        assert!(r.contains(needle), "{needle}: {r}");
    }
}
