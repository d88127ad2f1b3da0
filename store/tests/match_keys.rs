//! The `match_keys` projection: normalised phones, e-mails and INNs of leads, contacts and
//! companies, kept up to date by every change, rebuilt by replay and compared by verify.

use chrono::Utc;
use leadflow_engine::command::{NewCompany, NewLead};
use leadflow_engine::{Command, Config, EntityKind};
use leadflow_store::{MatchKey, Store};
use leadflow_testkit::{Db, config, exec_as, ivanov, memory_store, t0};
use serde_json::Value;

/// Runs a command as ivanov at `t0`.
fn run(store: &mut Store, config: &Config, cmd: Command) {
    exec_as(store, config, ivanov(), t0(), &cmd);
}

fn find(store: &mut Store, what: MatchKey, value: &str, kind: EntityKind) -> Vec<i64> {
    store
        .write(Utc::now(), |tx| {
            tx.matching(what, &[value.to_owned()], kind, None)
        })
        .unwrap()
}

#[test]
fn match_keys_follow_every_change_and_equal_a_replay() {
    let config = config();
    let db = Db::new();
    let mut store = db.open();
    run(
        &mut store,
        &config,
        Command::CreateLead(NewLead {
            name: Some("Ivan".into()),
            phones: vec!["8 912 345-67-89".into()],
            emails: vec!["Ivan@Example.com".into()],
            fields: [("inn".to_owned(), Value::from(" 7707083893 "))]
                .into_iter()
                .collect(),
            source: Some("web_form".into()),
            ..Default::default()
        }),
    );
    run(
        &mut store,
        &config,
        Command::CreateCompany(NewCompany {
            name: "Stone LLC".into(),
            inn: Some("7707083893".into()),
            ..Default::default()
        }),
    );
    assert_eq!(
        find(
            &mut store,
            MatchKey::Phone,
            "+79123456789",
            EntityKind::Lead
        ),
        [1]
    );
    assert_eq!(
        find(
            &mut store,
            MatchKey::Email,
            "IVAN@example.COM",
            EntityKind::Lead
        ),
        [1]
    );
    assert_eq!(
        find(&mut store, MatchKey::Inn, "7707083893", EntityKind::Lead),
        [1]
    );
    assert_eq!(
        find(&mut store, MatchKey::Inn, "7707083893", EntityKind::Company),
        [1]
    );
    // A changed phone: the old one no longer finds the lead, the new one does.
    run(
        &mut store,
        &config,
        Command::UpdateLead {
            id: 1,
            changes: [("phones".to_owned(), Value::from(vec!["+7 912 000-00-01"]))]
                .into_iter()
                .collect(),
        },
    );
    assert!(
        find(
            &mut store,
            MatchKey::Phone,
            "+79123456789",
            EntityKind::Lead
        )
        .is_empty()
    );
    assert_eq!(
        find(
            &mut store,
            MatchKey::Phone,
            "+79120000001",
            EntityKind::Lead
        ),
        [1]
    );
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    store.replay(&mut |_| {}).unwrap();
    assert_eq!(
        find(
            &mut store,
            MatchKey::Phone,
            "+79120000001",
            EntityKind::Lead
        ),
        [1]
    );
    assert!(
        find(
            &mut store,
            MatchKey::Phone,
            "+79123456789",
            EntityKind::Lead
        )
        .is_empty()
    );
    // The same lookup outside a write, for queries.
    assert_eq!(
        store
            .matching(
                MatchKey::Email,
                &["ivan@example.com".into()],
                EntityKind::Lead,
                None
            )
            .unwrap(),
        [1]
    );
    // An edited index row is a difference verify reports.
    db.tamper("DELETE FROM match_keys WHERE what = 'email'");
    let diffs = store.verify_projections(&mut |_| {}).unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].table, "match_keys");
}

#[test]
fn a_phone_with_an_extension_matches_the_same_line_without_one() {
    let config = config();
    let mut store = memory_store();
    run(
        &mut store,
        &config,
        Command::CreateLead(NewLead {
            name: Some("Office".into()),
            phones: vec!["+7 (937) 892-20-84 доб. 12".into()],
            source: Some("web_form".into()),
            ..Default::default()
        }),
    );
    for asked in ["+79378922084", "+79378922084;ext=7"] {
        assert_eq!(
            find(&mut store, MatchKey::Phone, asked, EntityKind::Lead),
            [1],
            "{asked}"
        );
    }
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}
