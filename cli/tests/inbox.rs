//! The inbox's read state through the real `leadflow` binary: marking read obeys the
//! `--now` backdating refusal, marks each notification once even under concurrent writers,
//! and records its receipt outside the lead's stream, so the lead's version and history stay
//! the lead's.

use serde_json::Value;

use std::process::Stdio;

use leadflow_testkit::cli::*;

/// Four leads, two of them ivanov's; their call-back deadlines elapse and notify ivanov.
fn with_notifications() -> Env {
    let env = Env::new();
    env.write("rules/call-back.toml", CALL_BACK_RULES);
    for name in ["Ivan", "Olga", "Pavel", "Maria"] {
        env.ok(&["lead", "create", "--name", name]);
    }
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    env
}

/// The positions of the employee's notifications.
fn positions(env: &Env, employee: &str) -> Vec<i64> {
    json_lines(&env.ok(&["--now", "2026-03-02T11:30:00Z", "--json", "inbox", employee]))
        .iter()
        .map(|n| n["position"].as_i64().unwrap())
        .collect()
}

#[test]
fn marking_read_with_a_now_before_the_last_event_is_refused_and_appends_nothing() {
    let env = with_notifications();
    let first = positions(&env, "ivanov")[0].to_string();
    env.refused_quietly(
        &[
            "--now",
            "2020-01-01 10:00",
            "inbox",
            "ivanov",
            "--mark-read",
            &first,
        ],
        1,
        "--backdate",
    );
    env.refused_quietly(
        &[
            "--now",
            "2020-01-01 10:00",
            "inbox",
            "ivanov",
            "--mark-all-read",
        ],
        1,
        "--backdate",
    );
    // The refusal is the backdating one, not the notification's: with --backdate it goes.
    env.ok(&[
        "--now",
        "2020-01-01 10:00",
        "--backdate",
        "inbox",
        "ivanov",
        "--mark-read",
        &first,
    ]);
}

#[test]
fn concurrent_mark_all_read_records_each_notification_read_once() {
    let env = with_notifications();
    let unread = positions(&env, "ivanov");
    assert_eq!(unread.len(), 2, "{unread:?}");
    let children: Vec<_> = (0..3)
        .map(|_| {
            env.cmd()
                .args([
                    "--now",
                    "2026-03-02T11:30:00Z",
                    "inbox",
                    "ivanov",
                    "--mark-all-read",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let reads: Vec<i64> = env
        .log()
        .iter()
        .filter(|e| e["type"] == "notification.read")
        .map(|e| e["payload"]["notification"].as_i64().unwrap())
        .collect();
    let mut sorted = reads.clone();
    sorted.sort_unstable();
    let mut expected = unread.clone();
    expected.sort_unstable();
    assert_eq!(
        sorted, expected,
        "each notification read exactly once: {reads:?}"
    );
    env.ok(&["verify"]);
}

#[test]
fn a_read_receipt_leaves_the_leads_version_and_history_alone_and_replays() {
    let env = with_notifications();
    let lead = |env: &Env| -> Value {
        serde_json::from_str(&env.ok(&["--json", "lead", "show", "1"])).unwrap()
    };
    let lead_events =
        |env: &Env| -> usize { env.log().iter().filter(|e| e["stream"] == "lead-1").count() };
    let version = lead(&env)["state"]["version"].clone();
    assert!(version.is_number(), "{}", lead(&env));
    let history = lead_events(&env);
    env.ok(&[
        "--now",
        "2026-03-02T11:30:00Z",
        "inbox",
        "ivanov",
        "--mark-all-read",
    ]);
    let events = env.log();
    let reads: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "notification.read")
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|e| e["stream"] == "system-1"), "{reads:?}");
    assert_eq!(lead(&env)["state"]["version"], version);
    assert_eq!(lead_events(&env), history);
    // An optimistic write on the lead at the version read before marking still goes.
    let v = version.as_i64().unwrap().to_string();
    env.ok(&[
        "--now",
        "2026-03-02T11:40:00Z",
        "lead",
        "update",
        "1",
        "--name",
        "Ivan I.",
        "--expect-version",
        &v,
    ]);
    env.ok(&["verify"]);
    env.ok(&["replay"]);
    env.ok(&["verify"]);
    let read_after_replay = json_lines(&env.ok(&[
        "--now",
        "2026-03-02T11:30:00Z",
        "--json",
        "inbox",
        "ivanov",
        "--read",
    ]));
    assert_eq!(read_after_replay.len(), 2, "{read_after_replay:?}");
}

#[test]
fn lead_list_says_no_in_the_repeat_column_for_a_first_time_lead_as_lead_show_does() {
    let env = Env::new();
    env.ok(&["lead", "create", "--name", "Ivan"]);
    let table = env.ok(&["lead", "list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let col = header.find("REPEAT").unwrap_or_else(|| panic!("{table}"));
    let row = lines.next().unwrap();
    let cell = row.get(col..).unwrap().split_whitespace().next();
    assert_eq!(cell, Some("no"), "{table}");
    let show = env.ok(&["lead", "show", "1"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("repeat") && l.split_whitespace().nth(1) == Some("no")),
        "{show}"
    );
}
