//! `detect_repeat` over an import, through the real binary: the matches come from the store's
//! `match_keys` index, and every repeat by phone, e-mail (in any case) and INN is found, and
//! nothing else.

use leadflow_testkit::cli::*;
use std::collections::BTreeMap;

const DETECT: &str = r#"
[[rules]]
id = "recognise-repeat"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "detect_repeat"
"#;

fn phone(i: usize) -> String {
    format!(
        "+7 912 {:03}-{:02}-{:02}",
        i / 10_000,
        i / 100 % 100,
        i % 100
    )
}

fn email(i: usize) -> String {
    format!("lead{i}@example.com")
}

fn inn(i: usize) -> String {
    format!("77{:08}", i)
}

#[test]
fn an_import_finds_every_repeat_by_phone_email_and_inn_and_nothing_else() {
    const N: usize = 600;
    let env = Env::with_rules("repeat.toml", DETECT);
    // Lead i (from 1) repeats: lead i-5's phone when i ends in 0, lead i-1's e-mail (upper
    // case) when it ends in 3, lead i-4's INN when it ends in 6 (leads ending in 2 have one).
    let mut csv = String::from("name,phone,email,inn\n");
    let mut want: BTreeMap<i64, &str> = BTreeMap::new();
    for i in 1..=N {
        let (p, e, n) = match i % 10 {
            0 => {
                want.insert(i as i64, "phone");
                (phone(i - 5), email(i), String::new())
            }
            3 => {
                want.insert(i as i64, "email");
                (phone(i), email(i - 1).to_uppercase(), String::new())
            }
            2 => (phone(i), email(i), inn(i)),
            6 => {
                want.insert(i as i64, "inn");
                (phone(i), email(i), inn(i - 4))
            }
            _ => (phone(i), email(i), String::new()),
        };
        csv += &format!("Lead {i},{p},{e},{n}\n");
    }
    std::fs::write(env.path().join("leads.csv"), csv).unwrap();
    env.ok(&["import", "leads.csv"]);
    let mut found: BTreeMap<i64, String> = BTreeMap::new();
    for line in env
        .ok(&["--json", "events", "--type", "lead.repeat_detected"])
        .lines()
    {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let id: i64 = e["stream"]
            .as_str()
            .unwrap()
            .trim_start_matches("lead-")
            .parse()
            .unwrap();
        let by: Vec<&str> = e["payload"]["by"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let leads: Vec<i64> = e["payload"]["leads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let earlier = match want.get(&id) {
            Some(&"phone") => id - 5,
            Some(&"email") => id - 1,
            Some(_) => id - 4,
            None => panic!("lead-{id} is no repeat, but was found one: {e}"),
        };
        assert_eq!(leads, [earlier], "lead-{id}: {e}");
        assert!(found.insert(id, by.join(",")).is_none(), "lead-{id} twice");
    }
    let want: BTreeMap<i64, String> = want.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    assert_eq!(found, want);
    env.ok(&["verify"]);
}
