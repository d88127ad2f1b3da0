//! The rules' reaction and the robots' decisions, tested against the engine's in-memory
//! backend — no SQLite: what the pure reaction (`leadflow_engine::react`) says the rules do
//! for one event, and what a robot decides from what it reads through the view.

use leadflow_engine::command::NewLead;
use leadflow_engine::event::{Event, IncidentRecorded};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::memory::Memory;
use leadflow_engine::react::{DEPTH_LIMIT, Reaction, Step, Then};
use leadflow_engine::rules::RuleSet;
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::workspace::{Backend, Stamp};
use leadflow_engine::{Actor, Command, Entity, EntityKind, EventMeta, StreamId};
use leadflow_robots::{Registry, Runtime};

use leadflow_testkit::{admin, config, meta, monday_10 as t0, rule_set};

fn rules(text: &str) -> RuleSet {
    rule_set(text, &config())
}

const RULES: &str = r#"
[[rules]]
id = "web"
trigger = { on = "created", entity = "lead" }
condition = 'lead.source == "web_form"'
[[rules.robots]]
robot = "set_field"
field = "material"
value = "granite"

[[rules]]
id = "later"
trigger = { on = "created", entity = "lead" }
delay = "2h"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "two hours on"

[[rules]]
id = "call_then_wait"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "create_task"
kind = "call"
title = "call {lead.title}"
[[rules.robots]]
robot = "wait"
for = "1h"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "did you call?"
"#;

/// Creates a lead from `source` in memory; its `lead.created`, as the log holds it.
fn created(memory: &mut Memory, source: &str) -> RecordedEvent {
    let config = config();
    memory
        .write(Stamp::At(t0()), |ws| {
            ws.execute(
                &config,
                &Command::CreateLead(NewLead {
                    title: Some("Countertop".into()),
                    source: Some(source.into()),
                    responsible: Some(EmployeeId("ivanov".into())),
                    ..Default::default()
                }),
                &meta(t0(), admin()),
            )
        })
        .unwrap();
    memory.events().last().unwrap().clone()
}

/// The steps of the reaction to `rec`, read from `memory`.
fn steps(memory: &mut Memory, rules: &RuleSet, rec: &RecordedEvent) -> Vec<Step> {
    let config = config();
    let event = rec.decode().unwrap();
    let is_external = |robot: &str| robot == "command";
    let mut reaction = Reaction::new(rules, &config, rec, &event, t0(), &is_external);
    let mut out = Vec::new();
    while let Some(step) = reaction.next_step(memory).unwrap() {
        out.push(step);
    }
    out
}

/// What a step is, in a line: the rule, the robots it runs now, and what follows.
fn line(step: &Step) -> String {
    let names = |calls: &[leadflow_engine::event::DelayedRobot]| {
        calls
            .iter()
            .map(|c| c.robot.as_str())
            .collect::<Vec<_>>()
            .join("+")
    };
    match step {
        Step::Fire {
            rule, run, then, ..
        } => {
            let then = match then {
                Then::Done => "done".to_owned(),
                Then::Delay { due_at, robots } => {
                    format!(
                        "then {} at +{}m",
                        names(robots),
                        (*due_at - t0()).num_minutes()
                    )
                }
                Then::WaitFailed(m) => format!("then wait failed: {m}"),
                Then::Answer(rest) => format!("then {} after the answer", names(rest)),
            };
            format!("fire {rule}: {} {then}", names(run))
        }
        Step::Delay {
            rule,
            robots,
            due_at,
            ..
        } => format!(
            "delay {rule}: {} at +{}m",
            names(robots),
            (*due_at - t0()).num_minutes()
        ),
        Step::Incident { kind, rule, .. } => format!("incident {kind} ({rule})"),
        Step::Cancel(events) => format!("cancel {}", events.len()),
        Step::Outcome { rule, .. } => format!("outcome {rule}"),
    }
}

#[test]
fn the_reaction_says_which_rules_fire_with_their_robots_delays_and_waits() {
    let rules = rules(RULES);
    let mut memory = Memory::new();
    let web = created(&mut memory, "web_form");
    let lines: Vec<String> = steps(&mut memory, &rules, &web).iter().map(line).collect();
    assert_eq!(
        lines,
        [
            "fire web: set_field done",
            "delay later: notify at +120m",
            "fire call_then_wait: create_task then notify at +60m",
        ]
    );
    // The condition reads the lead through the view: a lead from elsewhere skips the rule.
    let phone = created(&mut memory, "call");
    let lines: Vec<String> = steps(&mut memory, &rules, &phone)
        .iter()
        .map(line)
        .collect();
    assert_eq!(
        lines,
        [
            "delay later: notify at +120m",
            "fire call_then_wait: create_task then notify at +60m",
        ]
    );
}

#[test]
fn a_chain_too_deep_is_a_depth_limit_incident_and_the_reaction_stops() {
    let rules = rules(RULES);
    let mut memory = Memory::new();
    let first = created(&mut memory, "web_form");
    // Each event caused by the one before it, DEPTH_LIMIT deep.
    let lead = StreamId::new(EntityKind::Lead, 1);
    let mut cause = first.position;
    for _ in 0..DEPTH_LIMIT {
        memory
            .write(Stamp::At(t0()), |ws| {
                let version = ws.version(lead)?;
                ws.append(
                    lead,
                    version,
                    &[Event::IncidentRecorded(IncidentRecorded {
                        kind: "x".into(),
                        employee: None,
                        rule: None,
                        text: String::new(),
                    })],
                    &EventMeta {
                        occurred_at: t0(),
                        actor: Actor::System,
                        causation: Some(cause),
                        correlation: Some(first.position),
                    },
                )
            })
            .unwrap();
        cause = memory.events().last().unwrap().position;
    }
    // A lead created as the last of that chain: its rules stop at the limit, once.
    let mut deep = created(&mut memory, "web_form");
    deep.causation = Some(cause);
    let lines: Vec<String> = steps(&mut memory, &rules, &deep).iter().map(line).collect();
    assert_eq!(lines, ["incident depth_limit (web)"]);
    // Caused two events further down the chain, it is DEPTH_LIMIT - 1 steps deep: the rules
    // fire.
    deep.causation = Some(cause - 2);
    assert_eq!(steps(&mut memory, &rules, &deep).len(), 3);
}

/// Two leads in work for petrova, none for sidorov, a closed one for ivanov: who gets the
/// next (the first of the least loaded in the team's order).
fn least_loaded_pick<D: Backend>(db: &mut D) -> Option<EmployeeId> {
    let rt = Runtime::new(
        config(),
        rules(
            r#"
[[rules]]
id = "pick"
trigger = { on = "created", entity = "lead" }
condition = '!has(lead.responsible)'
[[rules.robots]]
robot = "assign"
strategy = "least_loaded"
team = "first_line"
"#,
        ),
        Registry::builtin(),
    );
    let config = config();
    let create = |db: &mut D, who: Option<&str>, stage: &str| {
        db.write(Stamp::At(t0()), |ws| {
            ws.execute(
                &config,
                &Command::CreateLead(NewLead {
                    title: Some("lead".into()),
                    phones: vec!["+7 912 000-00-01".into()],
                    responsible: who.map(|w| EmployeeId(w.into())),
                    stage: Some(stage.into()),
                    ..Default::default()
                }),
                &meta(t0(), admin()),
            )
        })
        .unwrap()
        .stream
    };
    create(db, Some("petrova"), "new");
    create(db, Some("petrova"), "in_work");
    // ivanov's lead was closed: it does not count (and he had the newest lead, so round
    // robin would pick sidorov).
    let closed = create(db, Some("ivanov"), "new");
    db.write(Stamp::At(t0()), |ws| {
        ws.execute(
            &config,
            &Command::MoveLead {
                id: closed.id,
                stage: "junk".into(),
                reason: Some("spam".into()),
            },
            &meta(t0(), admin()),
        )
    })
    .unwrap();
    rt.activate(db, t0()).unwrap();
    let lead = create(db, None, "new");
    rt.process(db, t0()).unwrap();
    match db.load(lead).unwrap() {
        Some(Entity::Lead(l)) => l.responsible,
        other => panic!("{other:?}"),
    }
}

#[test]
fn least_loaded_assignment_decides_from_the_view_in_memory_as_on_sqlite() {
    let in_memory = least_loaded_pick(&mut Memory::new());
    assert_eq!(in_memory, Some(EmployeeId("ivanov".into())));
    let on_sqlite = least_loaded_pick(&mut leadflow_store::Store::open_in_memory().unwrap());
    assert_eq!(on_sqlite, in_memory);
}

#[test]
fn an_external_robots_request_and_outcome_count_as_one_step_of_the_chain() {
    use leadflow_engine::event::{RobotCompleted, RobotOutcome, RobotRequested};
    use leadflow_engine::react::chain_depth;
    let mut memory = Memory::new();
    let created = created(&mut memory, "web_form");
    let lead = created.stream;
    let append = |memory: &mut Memory, event: Event, cause: i64| -> RecordedEvent {
        memory
            .write(Stamp::At(t0()), |ws| {
                let version = ws.version(lead)?;
                ws.append(
                    lead,
                    version,
                    &[event],
                    &EventMeta {
                        occurred_at: t0(),
                        actor: Actor::System,
                        causation: Some(cause),
                        correlation: Some(created.position),
                    },
                )
            })
            .unwrap();
        memory.events().last().unwrap().clone()
    };
    let request = append(
        &mut memory,
        Event::RobotRequested(RobotRequested {
            robot: "command".into(),
            rule: "ext".into(),
            ruleset: "h".into(),
            params: Default::default(),
            input: serde_json::Value::Null,
            key: "k".into(),
            then: vec![],
            survive_move: false,
        }),
        created.position,
    );
    let completed = append(
        &mut memory,
        Event::RobotCompleted(RobotCompleted {
            request: request.position,
            outcome: RobotOutcome::Answered,
            actions: vec![],
            error: None,
        }),
        request.position,
    );
    let action = append(
        &mut memory,
        Event::IncidentRecorded(IncidentRecorded {
            kind: "x".into(),
            employee: None,
            rule: None,
            text: String::new(),
        }),
        completed.position,
    );
    // The answer's effect is one step below the trigger, as a built-in robot's effect is.
    assert_eq!(chain_depth(&mut memory, &created).unwrap(), 0);
    assert_eq!(chain_depth(&mut memory, &action).unwrap(), 1);
}
