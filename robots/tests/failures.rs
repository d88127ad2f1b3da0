//! A robot that fails at run time, even by panicking, is a `robot_failed` incident: its
//! appends are rolled back, the cursor moves on, and later events are processed.

use leadflow_engine::Source;
use leadflow_engine::robot::RobotSpec;
use leadflow_engine::rules::RuleSet;
use leadflow_robots::{Ctx, Params, Registry, Robot, RobotError, Runtime};
use leadflow_testkit::{Db, config, create_lead, monday_10};
use std::sync::Arc;

/// Records an incident, then panics.
struct Panics;

impl Robot for Panics {
    fn run(&self, ctx: &mut Ctx<'_, '_>, _: &Params) -> Result<(), RobotError> {
        ctx.incident("half_done", None, "appended before the panic".into())?;
        panic!("overflow at 1")
    }
}

#[test]
fn a_panicking_robot_is_an_incident_and_the_runtime_goes_on() {
    let registry = Registry::builtin().with(
        RobotSpec {
            name: "panics",
            doc: "panics",
            params: vec![],
            emits: vec![],
        },
        Arc::new(Panics),
    );
    let rules = RuleSet::load(
        &[Source {
            path: "rules.toml".into(),
            text: "[[rules]]\nid = \"boom\"\ntrigger = { on = \"created\", entity = \"lead\" }\n[[rules.robots]]\nrobot = \"panics\"\n".into(),
        }],
        &config(),
        &registry,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::new(config(), rules, registry);
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    for _ in 0..2 {
        create_lead(&mut store, &config(), t0, "+79120000001");
        let report = rt.process(&mut store, t0).unwrap();
        assert_eq!(report.incidents, 1, "{report:?}");
    }
    assert_eq!(rt.process(&mut store, t0).unwrap().processed, 0);
    let texts: Vec<(String, String)> =
        db.rows("SELECT kind, text FROM incidents ORDER BY position");
    assert_eq!(
        texts.len(),
        2,
        "the half-done incidents were rolled back: {texts:?}"
    );
    for (kind, text) in &texts {
        assert_eq!(kind, "robot_failed");
        // The panic's location and message, for the bug report.
        let (at, message) = text
            .strip_prefix("rule 'boom', robot 'panics': the robot panicked at ")
            .and_then(|rest| rest.split_once(": "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(at.contains("tests/failures.rs:"), "{text}");
        assert_eq!(message, "overflow at 1", "{text}");
    }
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

/// Set in the child process [`a_caught_robot_panic_is_not_printed_but_others_are`] starts.
const CHILD: &str = "LEADFLOW_ROBOT_PANIC_CHILD";

/// Rust's default panic hook would print "thread '…' panicked at …" for a robot's panic that
/// the runtime catches and journals; it does not, while a panic on another thread at the same
/// moment is still printed (the hook is process-wide, the catching per thread). Run in a child
/// process of this test binary so that its stderr can be read.
#[test]
fn a_caught_robot_panic_is_not_printed_but_others_are() {
    if std::env::var_os(CHILD).is_some() {
        // The runtime, as a user runs it.
        a_panicking_robot_is_an_incident_and_the_runtime_goes_on();
        // A panic elsewhere while a robot is inside the catch.
        let both = Arc::new(std::sync::Barrier::new(2));
        let robot = {
            let both = both.clone();
            std::thread::spawn(move || {
                leadflow_robots::panics::catch(move || {
                    both.wait();
                    both.wait();
                    panic!("robot bug {}", 7)
                })
            })
        };
        both.wait();
        let elsewhere = std::thread::spawn(|| panic!("elsewhere")).join();
        assert!(elsewhere.is_err());
        both.wait();
        let caught = robot.join().unwrap().unwrap_err();
        assert!(caught.starts_with("panicked at "), "{caught}");
        assert!(caught.ends_with(": robot bug 7"), "{caught}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_caught_robot_panic_is_not_printed_but_others_are",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran nothing: {stdout}"
    );
    assert!(!stderr.contains("overflow at 1"), "{stderr}");
    assert!(!stderr.contains("robot bug"), "{stderr}");
    assert_eq!(
        stderr.matches("panicked at").count(),
        1,
        "only the other thread's panic is printed: {stderr}"
    );
    assert!(stderr.contains("elsewhere"), "{stderr}");
}
