//! Backtesting the rule set a history was made with reproduces it exactly: on generated
//! histories (leads from the web form and by phone, moves through the lead pipeline —
//! conversions into deals and contacts included —, qualification fields, tasks done, waits
//! that let deadlines elapse, escalations) made by seed scenarios A's and B's rules on a
//! virtual clock, `robots::backtest::run` with the same rules finds no difference and no
//! divergence (with the rule set changed midway, `as_recorded` does); and the same histories
//! with one rule file left out do differ.

use chrono::{DateTime, Duration, Utc};
use leadflow_engine::command::{FieldInputs, NewLead};
use leadflow_engine::workspace::{Backend, Stamp, WorkspaceError};
use leadflow_engine::{Actor, Command, EventMeta, Source};
use leadflow_robots::Runtime;
use leadflow_robots::backtest::{Options, run};
use leadflow_store::Store;
use leadflow_testkit::{config, monday_10};
use proptest::prelude::*;
use serde_json::json;

const INTAKE: &str = include_str!("../../examples/scenarios/a-two-line-sales/rules/intake.toml");
const TRANSFER: &str =
    include_str!("../../examples/scenarios/a-two-line-sales/rules/transfer.toml");
const QUALIFICATION: &str =
    include_str!("../../examples/scenarios/b-qualification/rules/qualification.toml");

fn runtime(files: &[(&str, &str)]) -> Runtime {
    let sources: Vec<Source> = files
        .iter()
        .map(|(p, t)| Source {
            path: (*p).into(),
            text: (*t).into(),
        })
        .collect();
    Runtime::load(config(), &sources).unwrap_or_else(|e| panic!("{e}"))
}

fn live_rules() -> Runtime {
    runtime(&[
        ("intake.toml", INTAKE),
        ("transfer.toml", TRANSFER),
        ("qualification.toml", QUALIFICATION),
    ])
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Op {
    /// A lead arrives (from the web form, or by phone as petrova's; with a phone or only an
    /// e-mail).
    Lead { web: bool, phone: bool },
    /// Its responsible (or ivanov) moves the n-th lead to a stage.
    Move { lead: usize, stage: usize },
    /// The qualification result and the product fields, all or some.
    Qualify { lead: usize, complete: bool },
    /// A task is done.
    Done { task: usize },
    /// The clock moves on.
    Wait { minutes: i64 },
}

const STAGES: [&str; 7] = [
    "in_work",
    "qualified",
    "transfer_goods",
    "transfer_services",
    "second_chance",
    "junk",
    "quality_control",
];

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (any::<bool>(), any::<bool>()).prop_map(|(web, phone)| Op::Lead { web, phone }),
        4 => (0..8usize, 0..STAGES.len()).prop_map(|(lead, stage)| Op::Move { lead, stage }),
        2 => (0..8usize, any::<bool>()).prop_map(|(lead, complete)| Op::Qualify { lead, complete }),
        1 => (0..8usize).prop_map(|task| Op::Done { task }),
        3 => (1..600i64).prop_map(|minutes| Op::Wait { minutes }),
    ];
    prop::collection::vec(op, 1..60)
}

/// Runs a command as `actor`, then the rules; a refusal is part of the history (nothing is
/// appended).
fn command(store: &mut Store, rt: &Runtime, now: DateTime<Utc>, actor: &str, cmd: Command) {
    let meta = EventMeta::root(
        now,
        if actor == "system" {
            Actor::System
        } else {
            Actor::Employee(actor.into())
        },
    );
    let config = rt.config();
    match Backend::write(store, Stamp::At(now), |ws| ws.execute(config, &cmd, &meta)) {
        Ok(_) | Err(WorkspaceError::Rejected(_)) => {}
        Err(e) => panic!("{e}"),
    }
    rt.process(store, now).unwrap();
}

/// The history `ops` make with the live rules, on a virtual clock from Monday 10:00.
fn history(ops: &[Op]) -> Store {
    history_switching(ops, usize::MAX)
}

/// The same, with the rule set changed before op number `switch` (scenario B's rules
/// dropped): the next command's run activates the new set, as in the CLI.
fn history_switching(ops: &[Op], switch: usize) -> Store {
    let mut rt = live_rules();
    let mut store = Store::open_in_memory().unwrap();
    let mut now = monday_10();
    rt.activate(&mut store, now).unwrap();
    let mut leads = 0i64;
    for (i, op) in ops.iter().enumerate() {
        if i == switch {
            rt = runtime(&[("intake.toml", INTAKE), ("transfer.toml", TRANSFER)]);
        }
        match op {
            Op::Lead { web, phone } => {
                leads += 1;
                let lead = NewLead {
                    name: Some(format!("Client {i}")),
                    phones: if *phone {
                        vec![format!("+7912345{:04}", i)]
                    } else {
                        vec![]
                    },
                    emails: vec![format!("c{i}@example.com")],
                    source: Some(if *web { "web_form" } else { "call" }.into()),
                    ..NewLead::default()
                };
                let actor = if *web { "system" } else { "petrova" };
                command(&mut store, &rt, now, actor, Command::CreateLead(lead));
            }
            Op::Move { lead, stage } if leads > 0 => {
                let id = (*lead as i64 % leads) + 1;
                let actor = responsible(&store, id);
                let stage = STAGES[*stage];
                let reason = (stage == "junk").then(|| "spam".to_owned());
                let cmd = Command::MoveLead {
                    id,
                    stage: stage.into(),
                    reason,
                };
                command(&mut store, &rt, now, &actor, cmd);
            }
            Op::Qualify { lead, complete } if leads > 0 => {
                let id = (*lead as i64 % leads) + 1;
                let mut changes = FieldInputs::new();
                changes.insert("qualification".into(), json!("qualified"));
                changes.insert("material".into(), json!("granite"));
                if *complete {
                    changes.insert("dimensions".into(), json!("600x3000"));
                    changes.insert("budget".into(), json!("120000"));
                    changes.insert("urgency".into(), json!("this_week"));
                }
                let actor = responsible(&store, id);
                command(
                    &mut store,
                    &rt,
                    now,
                    &actor,
                    Command::UpdateLead { id, changes },
                );
            }
            Op::Done { task } => {
                let cmd = Command::CompleteTask {
                    id: *task as i64 + 1,
                    result: Some("called".into()),
                };
                command(&mut store, &rt, now, "ivanov", cmd);
            }
            Op::Wait { minutes } => {
                let to = now + Duration::minutes(*minutes);
                rt.advance(&mut store, now, to).unwrap();
                now = to;
            }
            Op::Move { .. } | Op::Qualify { .. } => {}
        }
    }
    store
}

/// Lead `id`'s responsible, or ivanov when it has none.
fn responsible(store: &Store, id: i64) -> String {
    match store.load(leadflow_engine::StreamId::new(
        leadflow_engine::EntityKind::Lead,
        id,
    )) {
        Ok(Some(leadflow_engine::Entity::Lead(l))) => l
            .responsible
            .map_or_else(|| "ivanov".to_owned(), |r| r.to_string()),
        _ => "ivanov".to_owned(),
    }
}

/// The sandbox's writes held as `leadflow backtest` holds them, in transactions of a few
/// events here, so that generated histories cross many commits.
const BATCH: i64 = 5;

fn backtest(live: &Store, candidate: Runtime) -> leadflow_engine::backtest::Diff {
    let mut sandbox = Store::open_in_memory().unwrap();
    run(
        live,
        &mut sandbox.batched(BATCH),
        candidate,
        None,
        true,
        &Options::default(),
    )
    .unwrap()
    .comparison
    .finish(&|_| true)
}

/// A backtest of `live` with `--as-recorded` (each recorded rule set in force from its
/// activation; the live rules before the first).
fn as_recorded(live: &Store) -> leadflow_engine::backtest::Diff {
    let mut sandbox = Store::open_in_memory().unwrap();
    let opts = Options {
        as_recorded: true,
        ..Options::default()
    };
    run(
        live,
        &mut sandbox.batched(BATCH),
        live_rules(),
        None,
        true,
        &opts,
    )
    .unwrap()
    .comparison
    .finish(&|_| true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn backtesting_the_live_rules_reproduces_any_generated_history(ops in ops()) {
        let live = history(&ops);
        let diff = backtest(&live, live_rules());
        prop_assert!(diff.is_empty(), "{}\n{:#?}", diff.summary(), diff.differing);
        prop_assert_eq!(diff.divergences, 0);
    }

    #[test]
    fn with_the_rule_set_changed_midway_as_recorded_reproduces_any_generated_history(
        ops in ops(),
        at in 0..60usize,
    ) {
        let diff = as_recorded(&history_switching(&ops, at));
        prop_assert!(diff.is_empty(), "{}\n{:#?}", diff.summary(), diff.differing);
        prop_assert_eq!(diff.divergences, 0);
    }
}

/// A fixed history that goes through every kind of effect: assignments, conversions, missed
/// deadlines with incidents and an escalation, qualification.
fn busy() -> Vec<Op> {
    let mut ops = Vec::new();
    for _ in 0..4 {
        ops.push(Op::Lead {
            web: true,
            phone: true,
        });
    }
    for lead in 0..4 {
        ops.push(Op::Move { lead, stage: 0 });
    }
    ops.push(Op::Qualify {
        lead: 0,
        complete: true,
    });
    for _ in 0..4 {
        ops.push(Op::Wait { minutes: 300 });
    }
    ops.push(Op::Move { lead: 1, stage: 2 });
    ops.push(Op::Move { lead: 2, stage: 3 });
    ops.push(Op::Wait { minutes: 3000 });
    ops
}

#[test]
fn a_busy_history_is_reproduced_and_leaving_out_the_qualification_rules_shows_in_the_diff() {
    let live = history(&busy());
    let same = backtest(&live, live_rules());
    assert!(same.is_empty(), "{}\n{:#?}", same.summary(), same.differing);
    for ty in [
        "lead.assigned",
        "deal.created",
        "contact.created",
        "deadline.scheduled",
        "incident.recorded",
    ] {
        let c = same.by_type.get(ty).copied().unwrap_or_default();
        assert!(c.live > 0 && c.live == c.candidate, "{ty}: {c:?}");
    }
    let without = backtest(
        &live,
        runtime(&[("intake.toml", INTAKE), ("transfer.toml", TRANSFER)]),
    );
    assert!(!without.is_empty());
    let deadlines = without.by_type["deadline.scheduled"];
    assert!(
        deadlines.live > 0 && deadlines.candidate == 0,
        "{deadlines:?}"
    );
    assert!(
        without.summary().contains("fewer deadlines"),
        "{}",
        without.summary()
    );
}

/// The CLI stamps a command's events and its rules run (where a changed rule set is
/// activated) with two readings of its clock, the second after the command's commit: that
/// activation still comes with the command, whose events the new set reacts to.
#[test]
fn a_rule_set_activated_by_a_commands_rules_run_a_moment_later_reacts_to_that_command() {
    let mut store = Store::open_in_memory().unwrap();
    let now = monday_10();
    let old = live_rules();
    old.activate(&mut store, now).unwrap();
    let lead = NewLead {
        name: Some("Client".into()),
        emails: vec!["c@example.com".into()],
        source: Some("web_form".into()),
        ..NewLead::default()
    };
    command(&mut store, &old, now, "system", Command::CreateLead(lead));
    // The qualification rules are dropped; the next command's run activates the new set 30 ms
    // after the command (its move to in_work then sets no qualification deadline).
    let new = runtime(&[("intake.toml", INTAKE), ("transfer.toml", TRANSFER)]);
    let t1 = now + Duration::hours(1);
    let actor = responsible(&store, 1);
    let meta = EventMeta::root(t1, Actor::Employee(actor.as_str().into()));
    let cmd = Command::MoveLead {
        id: 1,
        stage: "in_work".into(),
        reason: None,
    };
    Backend::write(&mut store, Stamp::At(t1), |ws| {
        ws.execute(new.config(), &cmd, &meta)
    })
    .unwrap();
    new.process(&mut store, t1 + Duration::milliseconds(30))
        .unwrap();
    let diff = as_recorded(&store);
    assert!(diff.is_empty(), "{}\n{:#?}", diff.summary(), diff.differing);
    assert_eq!(diff.divergences, 0);
}
