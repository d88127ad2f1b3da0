//! `lead delete`, `deal delete`, `contact delete`, `company delete` on the real binary: the
//! entity leaves the lists and `show` says it was deleted; its events stay, `verify` and
//! `replay` pass; a converted lead is refused and nothing is appended.

use leadflow_testkit::cli::*;

#[test]
fn a_deleted_lead_leaves_the_list_and_show_says_it_was_deleted() {
    let env = Env::new();
    env.create_lead("Ivan");
    env.create_lead("Pyotr");
    let out = env.ok(&["lead", "delete", "1", "--reason", "duplicate"]);
    assert!(out.contains("lead-1") && out.contains("deleted"), "{out}");
    let list = env.ok(&["lead", "list"]);
    assert!(list.contains("Pyotr") && !list.contains("Ivan"), "{list}");
    env.refused_saying(
        &["lead", "show", "1"],
        1,
        &["lead-1 was deleted", "position"],
    );
    // A command on it is refused as on a lead that does not exist.
    env.refused_saying(
        &["lead", "move", "1", "in_work"],
        1,
        &["lead-1 does not exist"],
    );
    env.refused_saying(&["lead", "delete", "1"], 1, &["lead-1 does not exist"]);
    let types = env.log_types();
    assert_eq!(
        types.iter().filter(|t| *t == "lead.deleted").count(),
        1,
        "{types:?}"
    );
    let event = env
        .log()
        .into_iter()
        .find(|e| e["type"] == "lead.deleted")
        .unwrap();
    assert_eq!(event["payload"]["reason"], "duplicate", "{event}");
    env.ok(&["verify"]);
    env.ok(&["replay"]);
    env.ok(&["verify"]);
    let list = env.ok(&["lead", "list"]);
    assert!(!list.contains("Ivan"), "{list}");
}

#[test]
fn deals_contacts_and_companies_are_deleted_the_same_way() {
    let env = Env::new();
    env.ok(&["company", "create", "--name", "Гранит"]);
    env.ok(&[
        "contact",
        "create",
        "--name",
        "Анна",
        "--phone",
        "8 912 000-00-01",
    ]);
    env.ok(&["deal", "create", "--title", "Столешница"]);
    for (kind, id) in [
        ("deal", "deal-1"),
        ("contact", "contact-1"),
        ("company", "company-1"),
    ] {
        env.ok(&[kind, "delete", "1"]);
        env.refused_saying(&[kind, "show", "1"], 1, &[&format!("{id} was deleted")]);
    }
    assert!(env.ok(&["contact", "list"]).contains("no contacts"));
    env.ok(&["verify"]);
}

#[test]
fn a_converted_lead_is_not_deleted() {
    let env = Env::new();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "8 912 345-67-89",
        "--responsible",
        "ivanov",
        "--stage",
        "transfer_goods",
    ]);
    env.ok(&["lead", "move", "1", "converted"]);
    env.refused_saying(
        &["lead", "delete", "1"],
        1,
        &["lead-1 was converted", "cannot be deleted"],
    );
    assert!(env.ok(&["lead", "list"]).contains("Ivan"));
}

#[test]
fn delete_checks_the_expected_version() {
    let env = Env::new();
    env.create_lead("Ivan");
    env.refused_saying(
        &["lead", "delete", "1", "--expect-version", "5"],
        1,
        &["conflict on lead-1"],
    );
    env.ok(&["lead", "delete", "1", "--expect-version", "1"]);
}
