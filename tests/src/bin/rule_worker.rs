//! A child process for the rules crash test: `rule_worker DB seed COUNT` appends COUNT leads
//! without running rules; `rule_worker DB process` runs the rules until the cursor reaches the
//! head, printing `processed N` after each transaction, so the test can kill it mid-way.

use leadflow_engine::command::NewLead;
use leadflow_engine::{Actor, Command, EventMeta};
use leadflow_store::{Options, Store};
use leadflow_testkit::{monday_10, runtime};
use std::io::Write;

/// Every lead gets three robot effects: a responsible, a task and an inbox message.
pub const RULES: &str = r#"
[[rules]]
id = "welcome"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "assign"
strategy = "round_robin"
team = "first_line"
[[rules.robots]]
robot = "create_task"
kind = "call"
title = "Call {lead.title}"
due = "2h"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "New lead: {lead.title}"
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = &args[1];
    let now = monday_10();
    let rt = runtime(RULES);
    let config = rt.config().clone();
    let mut store = Store::open(db, &Options::default()).expect("open");
    match args[2].as_str() {
        "seed" => {
            rt.activate(&mut store, now).expect("activate");
            let n: usize = args[3].parse().expect("count");
            store
                .write(now, |tx| {
                    for i in 0..n {
                        tx.execute(
                            &config,
                            &Command::CreateLead(NewLead {
                                title: Some(format!("Lead {i}")),
                                phones: vec![format!("+7912{:07}", i)],
                                source: Some("web_form".into()),
                                ..Default::default()
                            }),
                            &EventMeta::root(now, Actor::System),
                        )?;
                    }
                    Ok::<_, leadflow_store::Error>(())
                })
                .expect("seed");
        }
        "process" => {
            let mut out = std::io::stdout().lock();
            // One small transaction at a time, reported, so kills land between and inside them.
            loop {
                let report = rt.process_some(&mut store, now, 8).expect("process");
                writeln!(out, "processed {}", report.processed).expect("stdout");
                out.flush().expect("stdout");
                if report.processed == 0 {
                    break;
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
