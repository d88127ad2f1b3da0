//! The writer thread itself: a job that panics (a defect) fails alone, with its savepoint
//! rolled back, and the writer goes on; what its commits tell the rules loop (whether events
//! wait for the rules, the earliest timer they set), so the loop reads only when it must; who
//! commits: a quiet writer's caller on a multi-threaded runtime commits its own job (no
//! hand-over to the writer thread), other callers hand over, and no job is ever left queued;
//! whoever commits a job, what it logs carries the span (the request id) of the request that
//! queued it.

use leadflow_engine::{Actor, Command, EventMeta};
use leadflow_server::writer::{Answer, Notes};
use leadflow_server::{ApiError, Service, Setup};
use leadflow_store::{Options, Store};
use leadflow_testkit::config;
use leadflow_testkit::serve::Wall;
use serde_json::json;
use std::sync::Arc;

fn create(name: &str) -> Command {
    let args = json!({"name": name});
    leadflow_engine::verb::build(
        leadflow_engine::verb::Verb::LeadCreate,
        args.as_object().unwrap(),
        chrono::Utc::now(),
        &config(),
    )
    .unwrap()
}

#[test]
fn a_job_that_panics_fails_alone_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    Store::open(&db, &Options::default()).unwrap();
    let service = Service::start(Setup {
        config: config(),
        db: db.clone(),
        options: Options::default(),
        rules: None,
        reload: Arc::new(|_| Ok(None)),
        clock: Arc::new(Wall),
    })
    .unwrap();
    let writer = service.state().writer.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let boom = writer.run(
            None,
            Box::new(|tx, ctx| {
                // Appends, then panics: the append must not be kept.
                tx.execute(
                    ctx.config,
                    &create("Half done"),
                    &EventMeta::root(ctx.now, Actor::System),
                )?;
                panic!("boom");
            }),
        );
        let fine = writer.run(
            None,
            Box::new(|tx, ctx| {
                tx.execute(
                    ctx.config,
                    &create("Whole"),
                    &EventMeta::root(ctx.now, Actor::System),
                )?;
                Ok(Answer::ok(json!({})))
            }),
        );
        let (boom, fine) = tokio::join!(boom, fine);
        match boom {
            Err(ApiError::Internal(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("expected a 500 for the panic, got {other:?}"),
        }
        fine.unwrap();
        assert!(writer.is_alive());
        writer
            .run(None, Box::new(|_, _| Ok(Answer::ok(json!({})))))
            .await
            .unwrap();
    });
    drop(writer);
    drop(service);
    let store = Store::open(&db, &Options::default()).unwrap();
    let names: Vec<String> = leadflow_store::query::leads(&store, &Default::default())
        .unwrap()
        .into_iter()
        .filter_map(|l| l.name)
        .collect();
    assert_eq!(names, ["Whole"]);
}

/// A request's job reacts in its own savepoint: its commit leaves nothing for the rules loop
/// to process, only the timer its robots set; a job run without the reactions (the rules' own
/// work, delivery) leaves its events for the loop; a commit that sets no timer says none — and
/// wakes nobody.
#[test]
fn a_commit_tells_the_rules_loop_what_it_left_and_the_earliest_timer_it_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    Store::open(&db, &Options::default()).unwrap();
    let rules = leadflow_testkit::runtime(
        r#"
[[rules]]
id = "call-back"
trigger = { on = "created", entity = "lead" }
condition = 'lead.name == "Call me"'

  [[rules.robots]]
  robot = "create_task"
  kind = "call"
  title = "Call back"
  assignee = "employee"
  employee = "admin"
  due = "3h"
"#,
    );
    let service = Service::start(Setup {
        config: config(),
        db: db.clone(),
        options: Options::default(),
        rules: Some(rules),
        reload: Arc::new(|_| Ok(None)),
        clock: Arc::new(Wall),
    })
    .unwrap();
    let writer = service.state().writer.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lead = |name: &'static str| -> leadflow_server::writer::Work {
        Box::new(move |tx, ctx| {
            tx.execute(
                ctx.config,
                &create(name),
                &EventMeta::root(ctx.now, Actor::System),
            )?;
            Ok(Answer::ok(json!({ "now": ctx.now.to_rfc3339() })))
        })
    };
    rt.block_on(async {
        assert_eq!(
            writer.take_notes(),
            Notes::default(),
            "nothing committed yet"
        );
        // The first job's reactions put the rule set in force (a rule set reacts to the
        // events after its activation), as the service's first rules pass does.
        writer
            .run(None, Box::new(|_, _| Ok(Answer::ok(json!({})))))
            .await
            .unwrap();
        assert_eq!(
            writer.take_notes(),
            Notes::default(),
            "the activation sets no timer"
        );

        let a = writer.run(None, lead("Call me")).await.unwrap();
        let now: chrono::DateTime<chrono::Utc> = a.body["now"].as_str().unwrap().parse().unwrap();
        let notes = writer.take_notes();
        assert!(!notes.unprocessed, "{notes:?}");
        let due = notes.soonest_timer.expect("the task's due time");
        assert!(
            due > now && due <= now + chrono::Duration::hours(3),
            "{due} against {now}"
        );
        assert_eq!(writer.take_notes(), Notes::default(), "taken once");

        // The rules loop is woken for the commits that leave it something, not the others.
        let wakes = writer.wakes();
        let woken = || async {
            tokio::time::timeout(std::time::Duration::from_millis(50), wakes.rules.notified())
                .await
                .is_ok()
        };
        assert!(woken().await, "the timer's commit woke the rules loop");
        writer.run(None, lead("Quiet")).await.unwrap();
        assert_eq!(
            writer.take_notes(),
            Notes::default(),
            "no timer, nothing left"
        );
        assert!(!woken().await, "a commit that left nothing wakes nobody");

        writer.run_rules(lead("Quiet too")).await.unwrap();
        let notes = writer.take_notes();
        assert!(
            notes.unprocessed,
            "a job without the reactions leaves its events: {notes:?}"
        );
        assert!(woken().await, "unprocessed events wake the rules loop");
    });
}

fn quiet_service(db: &std::path::Path) -> Service {
    Store::open(db, &Options::default()).unwrap();
    Service::start(Setup {
        config: config(),
        db: db.to_owned(),
        options: Options::default(),
        rules: None,
        reload: Arc::new(|_| Ok(None)),
        clock: Arc::new(Wall),
    })
    .unwrap()
}

/// A job that creates a lead and answers with the name of the thread it ran on.
fn lead_saying_where(name: String) -> leadflow_server::writer::Work {
    Box::new(move |tx, ctx| {
        tx.execute(
            ctx.config,
            &create(&name),
            &EventMeta::root(ctx.now, Actor::System),
        )?;
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        Ok(Answer::ok(json!({ "thread": thread })))
    })
}

/// A multi-threaded runtime like the service's, its workers named `test-worker`.
fn workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-worker")
        .enable_all()
        .build()
        .unwrap()
}

fn thread_of(a: &Answer) -> &str {
    a.body["thread"].as_str().unwrap()
}

#[test]
fn a_quiet_writers_caller_commits_its_own_job_and_a_current_thread_caller_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let service = quiet_service(&dir.path().join("leadflow.db"));
    let writer = service.state().writer.clone();
    let multi = workers();
    let commits = || writer.committed().borrow().commits;
    let before = commits();
    let w = writer.clone();
    let threads: Vec<String> = multi.block_on(async move {
        tokio::spawn(async move {
            let mut threads = Vec::new();
            for i in 0..10 {
                let a = w
                    .run(None, lead_saying_where(format!("Own {i}")))
                    .await
                    .unwrap();
                threads.push(thread_of(&a).to_owned());
            }
            threads
        })
        .await
        .unwrap()
    });
    assert!(
        threads.iter().all(|t| t == "test-worker"),
        "one request at a time is committed on its caller's worker: {threads:?}"
    );
    assert_eq!(commits() - before, 10, "one commit each");

    // Outside a multi-threaded runtime (the delivery thread's own runtime) a caller cannot
    // block its runtime: the writer thread commits for it.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = single
        .block_on(writer.run(None, lead_saying_where("Handed over".into())))
        .unwrap();
    assert_eq!(thread_of(&a), "leadflow-writer");
}

/// Many callers at once, in waves: every job is answered (none left in the queue when the
/// caller committing leaves), each lead is stored once, and the callers share commits.
#[test]
fn concurrent_callers_share_commits_and_no_job_is_left_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    let service = quiet_service(&db);
    let writer = service.state().writer.clone();
    let multi = workers();
    let before = writer.committed().borrow().commits;
    let waves = 30;
    let width = 8;
    let w = writer.clone();
    let answered = multi.block_on(async move {
        let mut answered = 0;
        for wave in 0..waves {
            let jobs: Vec<_> = (0..width)
                .map(|i| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        w.run(None, lead_saying_where(format!("Wave {wave} lead {i}")))
                            .await
                    })
                })
                .collect();
            for job in jobs {
                // A job left in the queue would never be answered: the wave would hang.
                tokio::time::timeout(std::time::Duration::from_secs(20), job)
                    .await
                    .expect("every job is answered")
                    .unwrap()
                    .unwrap();
                answered += 1;
            }
        }
        answered
    });
    assert_eq!(answered, waves * width);
    let commits = writer.committed().borrow().commits - before;
    assert!(
        commits < (waves * width) as u64,
        "{commits} commits for {answered} jobs: callers share commits"
    );
    drop(writer);
    drop(service);
    let store = Store::open(&db, &Options::default()).unwrap();
    let mut names: Vec<String> = leadflow_store::query::leads(&store, &Default::default())
        .unwrap()
        .into_iter()
        .filter_map(|l| l.name)
        .collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(
        (total, names.len()),
        (waves * width, waves * width),
        "each lead once"
    );
}

/// What every test of this file logs (the subscriber is global: the writer thread logs too).
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

#[test]
fn what_a_job_logs_carries_the_request_span_of_whoever_queued_it() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let service = quiet_service(&dir.path().join("leadflow.db"));
    let writer = service.state().writer.clone();
    // On a current-thread runtime the writer thread commits the job: another thread than the
    // one whose span it was queued in.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let span = tracing::info_span!("request", id = "req-7f3a");
    let a = single
        .block_on(tracing::Instrument::instrument(
            writer.run(
                None,
                Box::new(|_, _| {
                    tracing::info!("job says hello");
                    let thread = std::thread::current().name().unwrap_or("").to_owned();
                    Ok(Answer::ok(json!({ "thread": thread })))
                }),
            ),
            span,
        ))
        .unwrap();
    assert_eq!(thread_of(&a), "leadflow-writer");
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("job says hello"))
        .unwrap_or_else(|| panic!("no job line in {text}"));
    assert!(line.contains("request{id=\"req-7f3a\"}"), "{line}");
}
