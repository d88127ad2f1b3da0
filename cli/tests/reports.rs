//! `leadflow report` through the real binary: on a small hand-made week whose figures are
//! known (a manager who junks 4 of his 5 leads shows first with 80 %, the funnel, time in stage
//! against its targets, forgotten leads, incoming against lost, the KPI rows, the traffic light
//! with its reasons, the plan), the HTML page (self-contained, with its SVG charts), the
//! refusals of bad filters (which append nothing), the reports `--as-of` a time or position
//! (the figures of then, said in every format; bad ones refused); and docs/REPORTS.md: its
//! SQL blocks are the statements leadflow runs, and run through SQL on the demo's database
//! they give the numbers of `--format json`.

use leadflow_testkit::Db;
use leadflow_testkit::cli::*;
use serde_json::{Map, Value};

/// Runs a report at `until` as JSON.
fn report(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

/// The row of `rows` whose `key` is `value`.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows:#}"))
}

const MON: &str = "2026-03-02T09:00:00Z";

/// A Monday of the first line: ivanov gets leads 1–10 and junks 3 of them (2 spam, 1
/// not_target) at 09:30, takes lead 4 in work at 09:45 and lead 5 at 13:00; sidorov gets
/// leads 11–15 and junks 11–14 (no_answer) at 09:30. Contacts: 1 ivanov's with everything
/// (lead 7 open), 2 petrova's without an e-mail (lead 8 open), 3 sidorov's with no lead, 4
/// ivanov's with lead 9 whose call was due at 12:00 and is not done.
fn monday() -> Env {
    let env = Env::new();
    let at = |t: &str, args: &[&str]| {
        let mut all = vec!["--now", t];
        all.extend_from_slice(args);
        env.ok(&all);
    };
    let contact = |name: &str, who: &str, email: bool| {
        let mut args = vec![
            "contact",
            "create",
            "--name",
            name,
            "--phone",
            "+7 912 111-22-33",
            "--responsible",
            who,
            "--field",
            "birthday=1990-05-01",
        ];
        if email {
            args.extend_from_slice(&["--email", "client@example.ru"]);
        }
        at(MON, &args);
    };
    contact("Full", "ivanov", true);
    contact("No mail", "petrova", false);
    contact("Idle", "sidorov", true);
    contact("Late", "ivanov", true);
    for i in 1..=15 {
        let who = if i <= 10 { "ivanov" } else { "sidorov" };
        let name = format!("Lead {i}");
        let phone = format!("+7 912 000-00-{i:02}");
        let mut args = vec![
            "lead",
            "create",
            "--name",
            &name,
            "--phone",
            &phone,
            "--responsible",
            who,
        ];
        let contact = match i {
            7 => Some("1"),
            8 => Some("2"),
            9 => Some("4"),
            _ => None,
        };
        if let Some(c) = contact {
            args.extend_from_slice(&["--contact", c]);
        }
        at(MON, &args);
    }
    at(
        MON,
        &[
            "task",
            "create",
            "--title",
            "Call back",
            "--assignee",
            "ivanov",
            "--due",
            "2026-03-02T12:00:00Z",
            "--lead",
            "9",
        ],
    );
    for (id, reason) in [
        ("1", "spam"),
        ("2", "spam"),
        ("3", "not_target"),
        ("11", "no_answer"),
        ("12", "no_answer"),
        ("13", "no_answer"),
        ("14", "no_answer"),
    ] {
        at(
            "2026-03-02T09:30:00Z",
            &["lead", "move", id, "junk", "--reason", reason],
        );
    }
    at("2026-03-02T09:45:00Z", &["lead", "move", "4", "in_work"]);
    at("2026-03-02T13:00:00Z", &["lead", "move", "5", "in_work"]);
    env
}

#[test]
fn a_manager_who_junks_most_of_his_leads_shows_first_with_his_share_and_reasons() {
    let env = monday();
    let r = report(&env, &["conversion", "--until", "2026-03-03T09:00:00Z"]);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows[0]["responsible"], "sidorov", "{r:#}");
    let sidorov = &rows[0];
    assert_eq!(
        (&sidorov["leads"], &sidorov["lost"], &sidorov["won"]),
        (&Value::from(5), &Value::from(4), &Value::from(0))
    );
    assert_eq!(sidorov["lost_pct"], 80.0);
    assert_eq!(
        sidorov["reasons"],
        serde_json::json!([{"stage": "junk", "reason": "no_answer", "lost": 4}])
    );
    let ivanov = row(&r["rows"], "responsible", "ivanov");
    assert_eq!(
        (&ivanov["leads"], &ivanov["lost"]),
        (&Value::from(10), &Value::from(3))
    );
    assert_eq!(ivanov["lost_pct"], 30.0);
    assert_eq!(ivanov["open"], 7);
    assert_eq!(
        ivanov["reasons"],
        serde_json::json!([
            {"stage": "junk", "reason": "not_target", "lost": 1},
            {"stage": "junk", "reason": "spam", "lost": 2},
        ])
    );
    // The table says the same, sidorov on top.
    let table = env.ok(&["report", "conversion", "--until", "2026-03-03T09:00:00Z"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[2].starts_with("Pavel Sidorov"), "{table}");
    assert!(
        lines[2].contains("80.0") && lines[2].contains("junk/no_answer 4"),
        "{table}"
    );
    // --employee narrows it to one manager.
    let one = report(
        &env,
        &[
            "conversion",
            "--employee",
            "ivanov",
            "--until",
            "2026-03-03T09:00:00Z",
        ],
    );
    assert_eq!(one["rows"].as_array().unwrap().len(), 1, "{one:#}");
}

#[test]
fn the_funnel_counts_each_stage_reached_and_converts_stage_to_stage() {
    let env = monday();
    let r = report(&env, &["funnel", "--until", "2026-03-03T09:00:00Z"]);
    assert_eq!(r["cohort"], 15);
    let new = row(&r["rows"], "stage", "new");
    assert_eq!(
        (&new["reached"], &new["current"]),
        (&Value::from(15), &Value::from(6))
    );
    assert_eq!(
        new["step_pct"],
        Value::Null,
        "the first stage has no previous"
    );
    let in_work = row(&r["rows"], "stage", "in_work");
    assert_eq!(
        (&in_work["reached"], &in_work["from_previous"]),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(in_work["step_pct"], 13.3);
    let qualified = row(&r["rows"], "stage", "qualified");
    assert_eq!(
        (&qualified["reached"], &qualified["step_pct"]),
        (&Value::from(0), &Value::from(0.0))
    );
    let junk = row(&r["rows"], "stage", "junk");
    assert_eq!(
        (&junk["reached"], &junk["share_pct"]),
        (&Value::from(7), &Value::from(46.7))
    );
    assert_eq!(
        junk["step_pct"],
        Value::Null,
        "a failure stage is an exit, not a step"
    );
    // Every stage of the pipeline, in order.
    let stages: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages[..3], ["new", "in_work", "qualified"]);
    assert_eq!(stages.len(), 10);
    // A lead that starts in work skipped `new`: it reached in_work, but not from `new`.
    env.ok(&[
        "--now",
        "2026-03-02T14:00:00Z",
        "lead",
        "create",
        "--name",
        "Walk-in",
        "--phone",
        "+7 912 000-00-99",
        "--responsible",
        "petrova",
        "--stage",
        "in_work",
    ]);
    let r = report(&env, &["funnel", "--until", "2026-03-03T09:00:00Z"]);
    let in_work = row(&r["rows"], "stage", "in_work");
    assert_eq!(
        (
            &in_work["reached"],
            &in_work["from_previous"],
            &in_work["step_pct"]
        ),
        (&Value::from(3), &Value::from(2), &Value::from(13.3)),
        "2 of the 15 that were new: {r:#}"
    );
    // A period before everything has an empty cohort and no shares.
    let before = report(
        &env,
        &["funnel", "--since", "2026-02-01", "--until", "2026-03-01"],
    );
    assert_eq!(before["cohort"], 0);
    assert_eq!(
        row(&before["rows"], "stage", "new")["share_pct"],
        Value::Null
    );
}

#[test]
fn time_in_stage_averages_the_stays_and_counts_those_over_the_target() {
    let env = monday();
    let r = report(&env, &["time-in-stage", "--until", "2026-03-02T15:00:00Z"]);
    // new: 7 junked after 30 min, lead 4 after 45 min, lead 5 after 4 h, 6 still there at
    // 15:00 (6 h): 44.25 h / 15. The target is 1 h: lead 5 and the 6 still there are over.
    let new = row(&r["rows"], "stage", "new");
    assert_eq!(new["visits"], 15);
    assert_eq!(new["open"], 6);
    assert_eq!(new["avg_seconds"], 10620);
    assert_eq!(new["target_seconds"], 3600);
    assert_eq!(new["over_target"], 7);
    assert_eq!(new["over_target_pct"], 46.7);
    // in_work (target 4 h): lead 4 for 5 h 15 min (over), lead 5 for 2 h.
    let in_work = row(&r["rows"], "stage", "in_work");
    assert_eq!(
        (&in_work["visits"], &in_work["open"]),
        (&Value::from(2), &Value::from(2))
    );
    assert_eq!(in_work["avg_seconds"], 13050);
    assert_eq!(in_work["over_target"], 1);
    // junk has no target.
    let junk = row(&r["rows"], "stage", "junk");
    assert_eq!(
        (&junk["over_target"], &junk["target_seconds"]),
        (&Value::Null, &Value::Null)
    );
    // The table shows durations for people.
    let table = env.ok(&["report", "time-in-stage", "--until", "2026-03-02T15:00:00Z"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("new") && l.contains("2h 57m")),
        "{table}"
    );
}

#[test]
fn forgotten_leads_are_those_in_work_nobody_touched_for_the_days_given() {
    let env = monday();
    env.ok(&[
        "--now",
        "2026-03-04T09:00:00Z",
        "lead",
        "update",
        "6",
        "--comment",
        "called",
    ]);
    let r = report(&env, &["forgotten", "--until", "2026-03-06T09:00:00Z"]);
    let ids: Vec<i64> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    // Open: 4–10 (ivanov's, 6 updated on Wednesday) and 15 (sidorov's), the longest
    // forgotten first: those untouched since they came in at 09:00, then 4 (moved at 09:45)
    // and 5 (13:00).
    assert_eq!(ids, [7, 8, 9, 10, 15, 4, 5], "{r:#}");
    assert_eq!(row(&r["rows"], "stage", "in_work")["idle_days"], 3);
    // With a week, none; with 1 day, lead 6 too.
    let week = report(
        &env,
        &[
            "forgotten",
            "--days",
            "7",
            "--until",
            "2026-03-06T09:00:00Z",
        ],
    );
    assert_eq!(week["rows"], serde_json::json!([]));
    let day = report(
        &env,
        &[
            "forgotten",
            "--days",
            "1",
            "--until",
            "2026-03-06T09:00:00Z",
        ],
    );
    assert_eq!(day["rows"].as_array().unwrap().len(), 8);
    // Times for people are in the calendar's zone (Moscow).
    let table = env.ok(&["report", "forgotten", "--until", "2026-03-06T09:00:00Z"]);
    assert!(table.contains("2026-03-02 12:45 MSK"), "{table}");
}

#[test]
fn incoming_against_lost_per_manager_and_in_total() {
    let env = monday();
    let r = report(
        &env,
        &["incoming-vs-lost", "--until", "2026-03-03T09:00:00Z"],
    );
    let ivanov = row(&r["rows"], "responsible", "ivanov");
    assert_eq!(
        (&ivanov["incoming"], &ivanov["lost"], &ivanov["lost_pct"]),
        (&Value::from(10), &Value::from(3), &Value::from(30.0))
    );
    assert_eq!(
        r["total"],
        serde_json::json!({"incoming": 15, "lost": 7, "lost_pct": 46.7})
    );
    // Lost in a later period counts there, whenever the lead came in.
    let tuesday = report(
        &env,
        &[
            "incoming-vs-lost",
            "--since",
            "2026-03-03T00:00:00Z",
            "--until",
            "2026-03-04T00:00:00Z",
        ],
    );
    assert_eq!(tuesday["rows"], serde_json::json!([]));
}

#[test]
fn the_kpi_rows_are_the_daily_report_of_every_active_employee() {
    let env = monday();
    let r = report(
        &env,
        &[
            "kpi",
            "--since",
            "2026-03-02T00:00:00Z",
            "--until",
            "2026-03-03T00:00:00Z",
        ],
    );
    let ivanov = row(&r["rows"], "employee", "ivanov");
    assert_eq!(
        [
            &ivanov["leads_in"],
            &ivanov["converted"],
            &ivanov["lost"],
            &ivanov["overdue"]
        ],
        [
            &Value::from(10),
            &Value::from(0),
            &Value::from(3),
            &Value::from(1)
        ]
    );
    let sidorov = row(&r["rows"], "employee", "sidorov");
    assert_eq!(
        [&sidorov["leads_in"], &sidorov["lost"]],
        [&Value::from(5), &Value::from(4)]
    );
    assert_eq!(row(&r["rows"], "employee", "volkov")["leads_in"], 0);
    // --team keeps the team's members; the default period is the day before --until.
    let team = report(
        &env,
        &[
            "kpi",
            "--team",
            "first_line",
            "--until",
            "2026-03-03T00:00:00Z",
        ],
    );
    let who: Vec<&str> = team["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["employee"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["ivanov", "petrova", "sidorov"]);
    assert_eq!(team["since"], "2026-03-02T00:00:00.000000Z");
}

#[test]
fn the_traffic_light_is_red_yellow_or_green_with_every_reason_per_client_and_manager() {
    let env = monday();
    let r = report(&env, &["traffic-light", "--until", "2026-03-03T09:00:00Z"]);
    let client = |id: i64| {
        r["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "contact" && c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (client(1)["light"].clone(), client(1)["reasons"].clone()),
        (Value::from("green"), serde_json::json!([]))
    );
    assert_eq!(
        (client(2)["light"].clone(), client(2)["reasons"].clone()),
        (
            Value::from("yellow"),
            serde_json::json!(["contact_info_missing"])
        )
    );
    assert_eq!(
        (client(3)["light"].clone(), client(3)["reasons"].clone()),
        (
            Value::from("red"),
            serde_json::json!(["no_active_lead_or_deal"])
        )
    );
    assert_eq!(
        (client(4)["light"].clone(), client(4)["reasons"].clone()),
        (Value::from("red"), serde_json::json!(["overdue_task"]))
    );
    let manager = |who: &str| row(&r["managers"], "responsible", who).clone();
    assert_eq!(manager("ivanov")["light"], "red");
    assert_eq!(
        (
            manager("ivanov")["red"].clone(),
            manager("ivanov")["green"].clone()
        ),
        (Value::from(1), Value::from(1))
    );
    assert_eq!(manager("petrova")["light"], "yellow");
    // Before the task was due, the late client is green.
    let early = report(&env, &["traffic-light", "--until", "2026-03-02T10:00:00Z"]);
    let late = early["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == 4)
        .unwrap();
    assert_eq!(late["light"], "green", "{early:#}");
    // The table names the reasons in words.
    let table = env.ok(&["report", "traffic-light", "--until", "2026-03-03T09:00:00Z"]);
    assert!(table.contains("contact information missing"), "{table}");
    assert!(table.contains("no active lead or deal"), "{table}");
}

/// A past `--until` judges what the tables keep the history of as it was then: a task
/// overdue that night counts though it was done two days later, and a comment made after
/// `--until` does not make a lead remembered then.
#[test]
fn a_past_until_counts_the_tasks_overdue_then_and_the_activity_before_it() {
    let env = monday();
    env.ok(&["--now", "2026-03-04T09:00:00Z", "task", "complete", "1"]);
    env.ok(&[
        "--now",
        "2026-03-04T09:00:00Z",
        "lead",
        "update",
        "7",
        "--comment",
        "called",
    ]);
    let monday_night = "2026-03-03T00:00:00Z";
    let kpi = report(&env, &["kpi", "--until", monday_night]);
    assert_eq!(
        row(&kpi["rows"], "employee", "ivanov")["overdue"],
        1,
        "{kpi:#}"
    );
    let light = report(&env, &["traffic-light", "--until", monday_night]);
    let late = light["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "contact" && c["id"] == 4)
        .unwrap();
    assert_eq!(
        late["reasons"],
        serde_json::json!(["overdue_task"]),
        "{light:#}"
    );
    // Done now: nothing is overdue today.
    let now = report(
        &env,
        &["kpi", "--until", "2026-03-05T00:00:00Z", "--since", MON],
    );
    assert_eq!(
        row(&now["rows"], "employee", "ivanov")["overdue"],
        0,
        "{now:#}"
    );
    // Wednesday 08:00, a day's idleness: lead 7 was forgotten then (its comment came at 09:00).
    let forgotten_at = |until: &str| -> Vec<i64> {
        report(&env, &["forgotten", "--days", "1", "--until", until])["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect()
    };
    let then = forgotten_at("2026-03-04T08:00:00Z");
    assert!(then.contains(&7), "{then:?}");
    let later = forgotten_at("2026-03-04T10:00:00Z");
    assert!(!later.contains(&7), "{later:?}");
}

#[test]
fn leads_in_work_are_set_against_each_teams_plan() {
    let env = monday();
    let r = report(&env, &["managers", "--until", "2026-03-03T09:00:00Z"]);
    let first = row(&r["teams"], "team", "first_line");
    // Open: ivanov 7, sidorov 1; the example's plan for the first line is 40.
    assert_eq!(first["in_work"], 8);
    assert_eq!(first["plan"], 40);
    assert_eq!(first["plan_pct"], 20.0);
    assert_eq!(row(&first["members"], "employee", "ivanov")["in_work"], 7);
    assert_eq!(row(&first["members"], "employee", "petrova")["in_work"], 0);
}

#[test]
fn the_html_report_is_one_self_contained_page_with_svg_charts() {
    let env = monday();
    for (report, charts) in [
        ("funnel", 1),
        ("conversion", 1),
        ("time-in-stage", 1),
        ("traffic-light", 2),
    ] {
        let page = env.ok(&[
            "report",
            report,
            "--until",
            "2026-03-03T09:00:00Z",
            "--format",
            "html",
        ]);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert_eq!(page.matches("<svg").count(), charts, "{report}: {page}");
        for loaded in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(
                !page.contains(loaded),
                "{report} loads something ({loaded}): {page}"
            );
        }
        assert!(!page.contains("chart not drawn"), "{page}");
    }
    // What people typed is text, not markup, in the table and in the charts.
    env.ok(&[
        "--now",
        "2026-03-02T14:00:00Z",
        "contact",
        "create",
        "--name",
        "<b>Bold & Co</b>",
    ]);
    let page = env.ok(&[
        "report",
        "traffic-light",
        "--until",
        "2026-03-03T09:00:00Z",
        "--format",
        "html",
    ]);
    assert!(!page.contains("<b>"), "{page}");
    assert!(page.contains("&lt;b&gt;Bold &amp; Co&lt;/b&gt;"), "{page}");
    // The funnel's bars carry the counts; the grid has a square per client.
    let funnel = env.ok(&[
        "report",
        "funnel",
        "--until",
        "2026-03-03T09:00:00Z",
        "--format",
        "html",
    ]);
    let svg = &funnel[funnel.find("<svg").unwrap()..funnel.find("</svg>").unwrap()];
    assert!(
        svg.contains(">\n15\n</text>"),
        "no bar labelled 15 in {svg}"
    );
    let grid = env.ok(&[
        "report",
        "traffic-light",
        "--until",
        "2026-03-03T09:00:00Z",
        "--format",
        "html",
    ]);
    assert!(grid.contains("contact 4"), "{grid}");
    // CSV has the table's columns.
    let csv = env.ok(&[
        "report",
        "conversion",
        "--until",
        "2026-03-03T09:00:00Z",
        "--format",
        "csv",
    ]);
    assert!(csv.starts_with("MANAGER,LEADS,WON,LOST"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn bad_filters_are_refused_by_name_and_append_nothing() {
    let env = monday();
    env.refused_saying(
        &["report", "funnel", "--team", "nobody"],
        1,
        &["unknown team 'nobody'", "first_line"],
    );
    env.refused_saying(
        &["report", "kpi", "--employee", "ghost"],
        1,
        &["unknown employee 'ghost'", "ivanov"],
    );
    env.refused_saying(
        &["report", "funnel", "--pipeline", "cars"],
        1,
        &["unknown pipeline 'cars'", "goods"],
    );
    env.refused_saying(
        &["report", "kpi", "--pipeline", "goods"],
        2,
        &["--pipeline goods: the kpi report counts the leads of the lead pipeline"],
    );
    env.refused_saying(
        &[
            "report",
            "conversion",
            "--team",
            "goods",
            "--employee",
            "ivanov",
        ],
        1,
        &["'ivanov' is not in team 'goods'"],
    );
    env.refused_saying(
        &[
            "report",
            "funnel",
            "--since",
            "2026-03-05",
            "--until",
            "2026-03-01",
        ],
        2,
        &["--since 2026-03-05 00:00 MSK is not before --until 2026-03-01 00:00 MSK"],
    );
    env.refused_saying(
        &["report", "funnel", "--since", "yesterday-ish"],
        2,
        &["--since"],
    );
    env.refused_saying(
        &["report", "forgotten", "--days", "5000"],
        2,
        &["--days 5000"],
    );
    env.refused_saying(
        &["report", "sales"],
        2,
        &["invalid value 'sales'", "funnel"],
    );
}

/// The ```sql NAME blocks of docs/REPORTS.md.
fn doc_blocks() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/REPORTS.md"))
        .unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        if let Some(name) = l.strip_prefix("```sql ") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((name.trim().to_owned(), body.join("\n")));
        }
    }
    out
}

#[test]
fn the_docs_sql_blocks_are_the_statements_leadflow_runs() {
    let blocks = doc_blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = leadflow_store::report::STATEMENTS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(names, want);
    for ((name, body), (_, sql)) in blocks.iter().zip(leadflow_store::report::STATEMENTS) {
        assert_eq!(
            body.trim_end_matches(';'),
            *sql,
            "docs/REPORTS.md block {name}"
        );
    }
}

/// Which report and which list of its JSON each SQL block of the document gives.
const BLOCK_ROWS: &[(&str, &str, &str)] = &[
    ("funnel", "funnel", "rows"),
    ("funnel-steps", "funnel", "rows"),
    ("conversion", "conversion", "rows"),
    ("conversion-reasons", "conversion", "reasons"),
    ("managers", "managers", "employees"),
    ("time-in-stage", "time-in-stage", "rows"),
    ("forgotten", "forgotten", "rows"),
    ("incoming-vs-lost", "incoming-vs-lost", "rows"),
    ("traffic-light", "traffic-light", "clients"),
    ("kpi", "kpi", "rows"),
];

/// A JSON value as SQL gives it (true/false are 1/0).
fn as_sql(v: &Value) -> Value {
    match v {
        Value::Bool(b) => Value::from(i64::from(*b)),
        other => other.clone(),
    }
}

#[test]
fn the_docs_sql_run_on_the_demos_database_gives_the_numbers_of_each_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = leadflow_in(dir.path())
        .args(["demo", demo.to_str().unwrap(), "--leads", "80"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let db = Db::at(demo.join("leadflow.db"));
    let (first, last): (String, String) =
        db.row("SELECT min(occurred_at), max(occurred_at) FROM events");
    let run = |report: &str| -> Value {
        let out = leadflow_in(&demo)
            .args([
                "report",
                report,
                "--since",
                &first[..10],
                "--until",
                &format!("{}T23:59:59Z", &last[..10]),
                "--days",
                "1",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{report}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let blocks = doc_blocks();
    let mut nonempty = 0;
    for (block, report, list) in BLOCK_ROWS {
        let json = run(report);
        let params: Map<String, Value> = json["params"].as_object().unwrap().clone();
        let sql = &blocks.iter().find(|(n, _)| n == block).unwrap().1;
        let got = db.records(sql, &params);
        let rows = json[*list].as_array().unwrap();
        let same =
            |s: &Map<String, Value>, j: &Value| s.iter().all(|(k, v)| as_sql(&j[k.as_str()]) == *v);
        for s in &got {
            assert!(
                rows.iter().any(|j| same(s, j)),
                "{block}: the SQL's row {s:?} is not in the report's {list}: {rows:#?}"
            );
        }
        // A row of the report the SQL has not is a zero row (a stage nobody reached, an
        // employee with nothing).
        for j in rows {
            if !got.iter().any(|s| same(s, j)) {
                let counts = got.first().map_or_else(Vec::new, |s| {
                    s.iter()
                        .filter(|(k, v)| v.is_i64() && *k != "cohort" && *k != "id")
                        .map(|(k, _)| k.clone())
                        .collect()
                });
                for k in counts {
                    assert!(
                        j[k.as_str()] == 0 || j[k.as_str()].is_null(),
                        "{block}: the report's row {j} is not in the SQL's rows {got:?}"
                    );
                }
            }
        }
        nonempty += usize::from(!got.is_empty());
    }
    // The demo's week fills them (the comparison above is not of empty lists).
    assert!(nonempty >= 8, "only {nonempty} blocks gave rows");
}

/// The end-of-day KPI rule of scenario D (examples/scenarios/d-head-of-sales).
const DAILY_KPI: &str = r#"
[[rules]]
id = "daily-kpi"
trigger = { on = "schedule", cron = "0 0 18 * * Mon-Fri" }

  [[rules.robots]]
  robot = "send_report"
  to = "manager"
  period = "1d"
"#;

#[test]
fn the_send_report_robot_sends_the_rows_report_kpi_prints_for_its_period() {
    let env = monday();
    env.write("rules/kpi.toml", DAILY_KPI);
    // The rule set takes effect at 17:00 Moscow time; its 18:00 report fires at the next tick.
    env.ok(&["--now", "2026-03-02T14:00:00Z", "tick"]);
    env.ok(&["--now", "2026-03-02T15:30:00Z", "tick"]);
    let sent: Vec<Value> = env
        .log()
        .into_iter()
        .filter(|e| e["type"] == "report.sent")
        .collect();
    assert_eq!(sent.len(), 2, "smirnova's and volkov's: {sent:#?}");
    let mut compared = 0;
    for e in &sent {
        let p = &e["payload"];
        let (since, until) = (p["since"].as_str().unwrap(), p["until"].as_str().unwrap());
        let kpi = report(&env, &["kpi", "--since", since, "--until", until]);
        for robot_row in p["rows"].as_array().unwrap() {
            let employee = robot_row["employee"].as_str().unwrap();
            let cli_row = row(&kpi["rows"], "employee", employee);
            for k in ["leads_in", "converted", "lost", "overdue"] {
                assert_eq!(
                    robot_row[k], cli_row[k],
                    "{employee} {k}: {robot_row} / {cli_row}"
                );
            }
            compared += 1;
        }
    }
    let ivanov = sent
        .iter()
        .flat_map(|e| e["payload"]["rows"].as_array().unwrap().iter())
        .find(|r| r["employee"] == "ivanov")
        .unwrap();
    assert_eq!(
        (&ivanov["leads_in"], &ivanov["lost"], &ivanov["overdue"]),
        (&Value::from(10), &Value::from(3), &Value::from(1))
    );
    assert!(compared >= 6, "{sent:#?}");
}

/// The position of the first event of type `ty` in `log`.
fn first_of(log: &[Value], ty: &str) -> i64 {
    log.iter()
        .find(|e| e["type"] == ty)
        .and_then(|e| e["position"].as_i64())
        .unwrap_or_else(|| panic!("no {ty} in the log"))
}

#[test]
fn a_report_as_of_a_time_before_leads_were_junked_shows_the_figures_of_then() {
    let env = monday();
    let log = env.log();
    // Live: ivanov's 3 and sidorov's 4 are junk now, whatever the period.
    let live = report(&env, &["conversion", "--until", "2026-03-02T09:15:00Z"]);
    assert_eq!(row(&live["rows"], "responsible", "ivanov")["lost"], 3);
    assert_eq!(row(&live["rows"], "responsible", "sidorov")["lost"], 4);
    assert!(live.get("as_of").is_none(), "{live:#}");

    // As of 12:15 MSK (09:15Z), before the junking at 09:30Z: nobody had lost a lead.
    let then = report(&env, &["conversion", "--as-of", "2026-03-02 12:15"]);
    let junked = first_of(&log, "lead.stage_changed");
    assert_eq!(
        then["as_of"],
        serde_json::json!({"position": junked - 1, "time": "2026-03-02T09:15:00.000000Z"})
    );
    assert_eq!(
        then["until"], "2026-03-02T09:15:00.000000Z",
        "--until is the as-of time"
    );
    for who in ["ivanov", "sidorov"] {
        let r = row(&then["rows"], "responsible", who);
        assert_eq!(
            (&r["lost"], &r["open"]),
            (&Value::from(0), &r["leads"]),
            "{then:#}"
        );
    }
    assert_eq!(then["reasons"], serde_json::json!([]), "{then:#}");
    // The funnel of then: all 15 still new, none in junk.
    let funnel = report(&env, &["funnel", "--as-of", "2026-03-02 12:15"]);
    assert_eq!(
        row(&funnel["rows"], "stage", "new")["current"],
        15,
        "{funnel:#}"
    );
    assert_eq!(
        row(&funnel["rows"], "stage", "junk")["reached"],
        0,
        "{funnel:#}"
    );

    // As of the position that junked lead 1 (ivanov's spam): that one only, and the period
    // takes in its own instant.
    let one = report(&env, &["conversion", "--as-of", &junked.to_string()]);
    assert_eq!(one["as_of"]["position"], junked);
    assert_eq!(one["as_of"]["time"], "2026-03-02T09:30:00.000000Z");
    let ivanov = row(&one["rows"], "responsible", "ivanov");
    assert_eq!(
        (&ivanov["leads"], &ivanov["lost"]),
        (&Value::from(10), &Value::from(1))
    );
    assert_eq!(
        ivanov["reasons"],
        serde_json::json!([{"stage": "junk", "reason": "spam", "lost": 1}])
    );
    assert_eq!(row(&one["rows"], "responsible", "sidorov")["lost"], 0);
    // The period ends just after the event (a microsecond, the stored times' resolution), and
    // a kpi as of then covers the day before that.
    assert_eq!(one["until"], "2026-03-02T09:30:00.000001Z");
    let kpi = report(&env, &["kpi", "--as-of", &junked.to_string()]);
    assert_eq!(kpi["since"], "2026-03-01T09:30:00.000001Z", "{kpi:#}");

    // The table and the HTML page say what they are as of; CSV has the live columns only.
    let table = env.ok(&["report", "conversion", "--as-of", "2026-03-02 12:15"]);
    let header = format!("as of position {} (2026-03-02 12:15 MSK)", junked - 1);
    assert!(table.lines().next().unwrap().ends_with(&header), "{table}");
    let html = env.ok(&[
        "report",
        "funnel",
        "--as-of",
        "2026-03-02 12:15",
        "--format",
        "html",
    ]);
    assert!(html.contains(&header), "{html}");
    let csv_of = |extra: &[&str]| {
        let mut args = vec!["report", "conversion", "--format", "csv"];
        args.extend_from_slice(extra);
        env.ok(&args)
    };
    let csv_then = csv_of(&["--as-of", "2026-03-02 12:15"]);
    let csv_live = csv_of(&["--until", "2026-03-02T09:15:00Z"]);
    assert_eq!(csv_then.lines().next(), csv_live.lines().next());
    assert_ne!(csv_then, csv_live, "the rows are those of then");
    // An earlier --until is a period inside the as-of state.
    let early = report(
        &env,
        &[
            "funnel",
            "--as-of",
            "2026-03-02 12:15",
            "--until",
            "2026-03-02 12:10",
        ],
    );
    assert_eq!(early["until"], "2026-03-02T09:10:00.000000Z");
    // The live database was only read.
    assert_eq!(env.log(), log);
}

#[test]
fn a_bad_as_of_is_refused_by_name_and_appends_nothing() {
    let env = monday();
    let head = env.log().len();
    let past = (head + 1).to_string();
    env.refused_saying(
        &["report", "funnel", "--as-of", &past],
        1,
        &[&format!(
            "--as-of {past}: position {past} is past the head of the log (position {head})"
        )],
    );
    env.refused_saying(
        &["report", "funnel", "--as-of", "0"],
        2,
        &["--as-of 0: positions start at 1"],
    );
    env.refused_saying(
        &["report", "conversion", "--as-of", "2026-03-01 12:00"],
        1,
        &["--as-of 2026-03-01 12:00 MSK: that is before the log's start"],
    );
    env.refused_saying(
        &["report", "kpi", "--as-of", "yesterday-ish"],
        2,
        &["--as-of 'yesterday-ish'"],
    );
    env.refused_saying(
        &[
            "report",
            "funnel",
            "--as-of",
            "2026-03-02 12:15",
            "--until",
            "2026-03-02 13:00",
        ],
        2,
        &["--until 2026-03-02 13:00 MSK is after --as-of 2026-03-02 12:15 MSK"],
    );
    // A bad filter is refused as without --as-of.
    env.refused_saying(
        &["report", "funnel", "--as-of", "1", "--team", "nobody"],
        1,
        &["unknown team 'nobody'"],
    );
}

#[test]
fn every_report_in_every_format_runs_as_of_a_time_and_says_so() {
    let env = monday();
    let header = format!(
        "as of position {} (2026-03-02 12:15 MSK)",
        first_of(&env.log(), "lead.stage_changed") - 1
    );
    let kinds = [
        "funnel",
        "conversion",
        "managers",
        "time-in-stage",
        "traffic-light",
        "forgotten",
        "incoming-vs-lost",
        "kpi",
    ];
    for kind in kinds {
        let as_of = |format: &str| {
            env.ok(&[
                "report",
                kind,
                "--as-of",
                "2026-03-02 12:15",
                "--format",
                format,
            ])
        };
        let json: Value = serde_json::from_str(&as_of("json")).unwrap();
        assert_eq!(
            json["as_of"]["time"], "2026-03-02T09:15:00.000000Z",
            "{kind}"
        );
        assert_eq!(json["until"], "2026-03-02T09:15:00.000000Z", "{kind}");
        let table = as_of("table");
        assert!(
            table.lines().next().unwrap().ends_with(&header),
            "{kind}: {table}"
        );
        assert!(as_of("html").contains(&header), "{kind}");
        let csv = as_of("csv");
        assert!(!csv.contains("as of"), "{kind}: {csv}");
    }
}
