//! `tick --json` has one shape, with rules or without: the same keys, `rules` the number of
//! rules loaded. Through the real binary.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

use leadflow_testkit::cli::*;

const TWO_RULES: &str = r#"
[[rules]]
id = "call-task"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "create_task"
  kind = "call"
  title = "call {lead.title}"
  assignee = "employee"
  employee = "petrova"

[[rules]]
id = "mail-task"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "create_task"
  kind = "email"
  title = "write to {lead.title}"
  assignee = "employee"
  employee = "petrova"
"#;

fn tick_json(dir: &Path) -> serde_json::Map<String, Value> {
    let out = leadflow_in(dir).args(["--json", "tick"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_str(stdout.trim()).unwrap() {
        Value::Object(m) => m,
        other => panic!("not a JSON object: {other}"),
    }
}

#[test]
fn tick_json_has_the_same_keys_with_and_without_rules() {
    let bare = Env::new();
    let none = tick_json(bare.path());
    let ruled = Env::with_rules("tasks.toml", TWO_RULES);
    let some = tick_json(ruled.path());
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(keys(&none), keys(&some), "{none:?} vs {some:?}");
    assert_eq!(none["rules"], 0);
    assert_eq!(some["rules"], 2);
}
