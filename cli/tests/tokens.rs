//! `leadflow token create | list | revoke` on the real binary: a token's secret is printed
//! once and only its hash is kept; the mistakes a person makes are refused, naming the
//! problem, and append nothing.

use leadflow_testkit::cli::*;
use serde_json::Value;

/// Creates a token with `--json`; returns what it printed.
fn create_json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(&[&["--json", "token", "create"][..], args].concat());
    let v = json_lines(&out);
    assert_eq!(v.len(), 1, "{out}");
    v[0].clone()
}

fn is_secret(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn a_token_is_created_listed_and_revoked() {
    let env = Env::new();
    let out = env.run(&[
        "token",
        "create",
        "crm",
        "--role",
        "sales",
        "--employee",
        "kuznetsov",
        "--note",
        "the CRM sync",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = stdout(&out).trim().to_owned();
    assert!(is_secret(&secret), "{secret:?}");
    let said = stderr(&out);
    assert!(
        said.contains("token crm (role sales, acting for kuznetsov) was recorded as token-1")
            && said.contains("shown this once"),
        "{said}"
    );
    let site = create_json(&env, &["site", "--role", "intake"]);
    assert_eq!(site["name"], "site");
    assert_eq!(site["stream"], "token-2");
    assert_eq!(site["role"], "intake");
    assert_eq!(site["employee"], Value::Null);
    assert!(is_secret(site["secret"].as_str().unwrap()));
    assert_ne!(
        site["secret"].as_str().unwrap(),
        secret,
        "every secret is new"
    );

    let listed = env.ok(&["token", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ROLE"),
        "{listed}"
    );
    assert!(
        lines[1].starts_with("crm")
            && lines[1].contains("sales")
            && lines[1].contains("kuznetsov")
            && lines[1].contains("MSK")
            && lines[1].contains("employee:admin"),
        "{listed}"
    );
    assert!(
        lines[2].starts_with("site") && lines[2].contains("intake"),
        "{listed}"
    );

    let out = env.run(&["--as", "smirnova", "token", "revoke", "crm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("token crm (token-1) was revoked"),
        "{}",
        stderr(&out)
    );
    let rows = json_lines(&env.ok(&["--json", "token", "list"]));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "crm");
    assert_eq!(rows[0]["active"], false);
    assert_eq!(rows[0]["revoked_by"], "employee:smirnova");
    assert_eq!(rows[0]["created_by"], "employee:admin");
    assert!(
        rows[0]["revoked_at"].as_str().unwrap().ends_with('Z')
            || rows[0]["revoked_at"].as_str().unwrap().contains('+')
    );
    assert_eq!(rows[1]["name"], "site");
    assert_eq!(rows[1]["active"], true);
    for r in &rows {
        assert!(
            r.get("secret_hash").is_none() && r.get("secret").is_none(),
            "{r}"
        );
    }
    assert_eq!(
        env.log_types(),
        ["token.created", "token.created", "token.revoked"]
    );
    // A revoked token's name may be given again.
    create_json(&env, &["crm", "--role", "admin"]);
    env.ok(&["verify"]);
}

#[test]
fn token_mistakes_are_refused_naming_the_problem_and_append_nothing() {
    let env = Env::new();
    env.ok(&["token", "create", "crm", "--role", "sales"]);
    env.refused_quietly(
        &["token", "create", "bot", "--role", "root"],
        1,
        "error: unknown role 'root'; the configuration defines: admin, auditor, designer, first_line, head_of_sales, intake, sales",
    );
    env.refused_quietly(
        &["token", "create", "crm", "--role", "admin"],
        1,
        "a token named 'crm' exists already; revoke it first or choose another name",
    );
    env.refused_quietly(
        &[
            "token",
            "create",
            "bot",
            "--role",
            "sales",
            "--employee",
            "ghost",
        ],
        1,
        "unknown employee 'ghost'",
    );
    env.refused_quietly(
        &["token", "create", "Bot One", "--role", "sales"],
        1,
        "token name 'Bot One' must start with a lowercase letter or digit",
    );
    env.refused_quietly(
        &["token", "revoke", "nobody"],
        1,
        "unknown token 'nobody'; `leadflow token list` shows the tokens",
    );
    env.ok(&["token", "revoke", "crm"]);
    env.refused_quietly(
        &["token", "revoke", "crm"],
        1,
        "token 'crm' is already revoked",
    );
    let listed = json_lines(&env.ok(&["--json", "token", "list"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[test]
fn a_token_secret_never_reaches_the_database_or_the_log_only_its_hash() {
    let env = Env::new();
    let made = create_json(&env, &["crm", "--role", "admin", "--note", "for the test"]);
    let secret = made["secret"].as_str().unwrap().to_owned();
    env.ok(&["token", "revoke", "crm"]);
    let events = env.ok(&["--json", "events"]);
    assert!(
        !events.contains(&secret),
        "the secret is in `events`: {events}"
    );
    let created = &json_lines(&events)[0];
    assert_eq!(created["type"], "token.created");
    let hash = created["payload"]["secret_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    assert!(is_secret(hash) && hash != secret, "{hash}");
    // The hash a request's secret is looked up by (the service hashes what it is given).
    assert_eq!(hash, leadflow_engine::access::secret_hash(&secret));
    assert_eq!(created["payload"]["note"], "for the test");
    let shown = env.ok(&["events"]);
    assert!(!shown.contains(&secret), "{shown}");
    // Every file in the folder: the database, its WAL and shared-memory files.
    for entry in std::fs::read_dir(env.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {}",
                path.display()
            );
        }
    }
    let listed = env.ok(&["token", "list"]);
    assert!(
        !listed.contains(&secret) && !listed.contains(hash),
        "{listed}"
    );
}

#[test]
fn the_events_of_a_token_are_found_whoever_it_acted_for() {
    let env = Env::new();
    env.ok(&["--as", "api:crm@ivanov", "lead", "create", "--name", "Ivan"]);
    env.ok(&["--as", "api:crm", "lead", "create", "--name", "Olga"]);
    env.ok(&["--as", "api:crm2", "lead", "create", "--name", "Pavel"]);
    let actors = |filter: &str| -> Vec<String> {
        json_lines(&env.ok(&["--json", "events", "--actor", filter]))
            .iter()
            .map(|e| e["actor"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(actors("api:crm"), ["api:crm@ivanov", "api:crm"]);
    assert_eq!(actors("api:crm@ivanov"), ["api:crm@ivanov"]);
    assert_eq!(actors("api:crm2"), ["api:crm2"]);
    env.refused_quietly(
        &[
            "--as",
            "api:crm@ghost",
            "lead",
            "create",
            "--name",
            "Nobody",
        ],
        1,
        "unknown employee 'ghost'",
    );
}
