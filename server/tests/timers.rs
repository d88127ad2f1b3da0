//! Timers in the service: a timer another process set (a task made with the CLI) fires on time
//! while requests keep the writer committing — the rules loop's poll is not put off by the
//! commits, whose own timers it learns of without reading.

use leadflow_engine::verb::{Verb, build};
use leadflow_engine::{Actor, EventMeta};
use leadflow_store::{Options, Store};
use leadflow_testkit::serve::{Server, Wall};
use leadflow_testkit::{all_events, config};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A rule set, so the service's rules run (it matches nothing here).
const RULES: &str = r#"
[[rules]]
id = "never"
trigger = { on = "created", entity = "deal" }
condition = 'false'

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "never"
"#;

#[test]
fn a_timer_another_process_set_fires_on_time_while_requests_keep_committing() {
    let cfg = config();
    let s = Server::start(cfg.clone(), RULES);
    // Requests every 50 ms for longer than the test waits: the writer commits all along.
    let busy = Arc::new(AtomicBool::new(true));
    let traffic = {
        let (busy, c) = (busy.clone(), s.client());
        std::thread::spawn(move || {
            let mut n = 0;
            while busy.load(Ordering::SeqCst) {
                let r = c.post("/api/v1/leads", &json!({"name": format!("Busy {n}")}));
                assert_eq!(r.status, 201, "{}", r.text());
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // Another process (the CLI) makes a task due in a second.
    let now = chrono::Utc::now();
    let due = now + chrono::Duration::seconds(1);
    let args = json!({"kind": "call", "title": "Call back", "assignee": "admin",
        "due_at": due.to_rfc3339()});
    let cmd = build(Verb::TaskCreate, args.as_object().unwrap(), now, &cfg).unwrap();
    let mut store = Store::open(&s.db, &Options::default()).unwrap();
    store
        .write_with(&Wall, |tx| {
            tx.execute(&cfg, &cmd, &EventMeta::root(now, Actor::System))
        })
        .unwrap();
    drop(store);
    let made = Instant::now();
    // It fires within its second and a poll (with room for a slow machine), while the
    // requests go on.
    let overdue = loop {
        let read = Store::open_read(&s.db, &Options::default()).unwrap();
        if all_events(&read)
            .iter()
            .any(|e| e.event_type == "task.overdue")
        {
            break Some(made.elapsed());
        }
        if made.elapsed() > Duration::from_secs(6) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    busy.store(false, Ordering::SeqCst);
    let requests = traffic.join().unwrap();
    let overdue = overdue.expect("the task never went overdue while requests came in");
    assert!(
        overdue < Duration::from_secs(3),
        "the task went overdue {overdue:?} after it was made, due in 1 s (poll {:?}), {requests} requests",
        leadflow_server::runtime::POLL
    );
    assert!(requests > 20, "the requests kept coming: {requests}");
}
