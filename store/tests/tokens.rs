//! API tokens in the store: `token.created` / `token.revoked` through `Tx::execute`, the
//! `tokens` table they project to, its two queries, and replay and verify over it.

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::command::NewToken;
use leadflow_engine::{Actor, Command, Config, EntityKind, EventMeta, StreamId};
use leadflow_store::{Error, Store, query};

fn config() -> Config {
    Config::from_toml("leadflow.toml", leadflow_engine::config::DEFAULT_CONFIG).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn run(store: &mut Store, at: DateTime<Utc>, cmd: Command) -> Result<StreamId, Error> {
    let config = config();
    let meta = EventMeta::root(at, Actor::Employee("admin".into()));
    store
        .write(at, |tx| tx.execute(&config, &cmd, &meta))
        .map(|e| e.stream)
}

fn create(name: &str, role: &str, employee: Option<&str>, hash: &str) -> Command {
    Command::CreateToken(NewToken {
        name: name.into(),
        role: role.into(),
        employee: employee.map(Into::into),
        secret_hash: hash.into(),
        note: None,
    })
}

fn revoke(name: &str) -> Command {
    Command::RevokeToken { name: name.into() }
}

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

#[test]
fn tokens_are_projected_found_by_hash_and_revoked_by_name() {
    let mut store = Store::open_in_memory().unwrap();
    let crm = run(
        &mut store,
        t0(),
        create("crm", "sales", Some("kuznetsov"), &hash('a')),
    )
    .unwrap();
    assert_eq!(crm, StreamId::new(EntityKind::Token, 1));
    let site = run(&mut store, t0(), create("site", "intake", None, &hash('b'))).unwrap();
    assert_eq!(site, StreamId::new(EntityKind::Token, 2));

    let found = query::token_by_hash(&store, &hash('a')).unwrap().unwrap();
    assert_eq!(found.name, "crm");
    assert_eq!(found.stream, crm);
    assert_eq!(found.role, "sales");
    assert_eq!(found.employee.as_deref(), Some("kuznetsov"));
    assert_eq!(found.created_at, t0());
    assert_eq!(found.created_by, "employee:admin");
    assert!(found.is_active());
    assert_eq!(query::token_by_hash(&store, &hash('c')).unwrap(), None);

    let later = t0() + Duration::hours(1);
    assert_eq!(run(&mut store, later, revoke("crm")).unwrap(), crm);
    let revoked = query::token_by_hash(&store, &hash('a')).unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(later));
    assert_eq!(revoked.revoked_by.as_deref(), Some("employee:admin"));
    assert!(!revoked.is_active());

    // The name is free again; the new token is a new stream.
    let again = run(&mut store, later, create("crm", "admin", None, &hash('d'))).unwrap();
    assert_eq!(again, StreamId::new(EntityKind::Token, 3));
    let names: Vec<(String, bool)> = query::tokens(&store)
        .unwrap()
        .into_iter()
        .map(|t| (t.name.clone(), t.is_active()))
        .collect();
    assert_eq!(
        names,
        [
            ("crm".to_owned(), false),
            ("site".to_owned(), true),
            ("crm".to_owned(), true)
        ]
    );
    // Revoking `crm` now revokes the live one.
    assert_eq!(run(&mut store, later, revoke("crm")).unwrap(), again);
    assert!(
        store.verify_projections(&mut |_| {}).unwrap().is_empty(),
        "the tokens table replays as it was written"
    );
    let in_snapshot = store.snapshot(|s| query::tokens(s)).unwrap();
    assert_eq!(in_snapshot.len(), 3);
}

#[test]
fn a_refused_token_command_appends_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    run(&mut store, t0(), create("crm", "sales", None, &hash('a'))).unwrap();
    let head = store.last_position().unwrap();
    for (cmd, message) in [
        (
            create("crm", "admin", None, &hash('b')),
            "a token named 'crm' exists already",
        ),
        (create("x", "root", None, &hash('b')), "unknown role 'root'"),
        (
            create("x", "sales", Some("ghost"), &hash('b')),
            "unknown employee 'ghost'",
        ),
        (revoke("nobody"), "unknown token 'nobody'"),
    ] {
        let err = run(&mut store, t0(), cmd).unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
    }
    run(&mut store, t0(), revoke("crm")).unwrap();
    let err = run(&mut store, t0(), revoke("crm"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("token 'crm' is already revoked"), "{err}");
    assert_eq!(store.last_position().unwrap(), head + 1);
}

#[test]
fn replay_rebuilds_the_tokens_table() {
    let mut store = Store::open_in_memory().unwrap();
    run(
        &mut store,
        t0(),
        create("crm", "sales", Some("kuznetsov"), &hash('a')),
    )
    .unwrap();
    run(&mut store, t0() + Duration::minutes(5), revoke("crm")).unwrap();
    run(&mut store, t0(), create("site", "intake", None, &hash('b'))).unwrap();
    let before = query::tokens(&store).unwrap();
    store.replay(&mut |_| {}).unwrap();
    assert_eq!(query::tokens(&store).unwrap(), before);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn a_secret_opens_its_token_until_it_is_revoked_and_acts_for_its_employee() {
    let mut store = Store::open_in_memory().unwrap();
    let secret = "c0ffee".repeat(10);
    let hash = leadflow_engine::access::secret_hash(&secret);
    run(
        &mut store,
        t0(),
        create("crm", "sales", Some("kuznetsov"), &hash),
    )
    .unwrap();
    let row = query::token_by_secret(&store, &secret).unwrap().unwrap();
    assert_eq!(row.name, "crm");
    assert_eq!(row.actor(None).to_string(), "api:crm@kuznetsov");
    assert_eq!(
        row.actor(Some("volkov".into())).to_string(),
        "api:crm@volkov"
    );
    assert_eq!(query::token_by_secret(&store, "wrong").unwrap(), None);
    run(&mut store, t0(), revoke("crm")).unwrap();
    assert_eq!(query::token_by_secret(&store, &secret).unwrap(), None);
    assert!(query::token_by_hash(&store, &hash).unwrap().is_some());
}
