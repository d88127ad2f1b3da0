//! The built-in robots that find, convert, check and report — `convert_lead`, `detect_repeat`,
//! `find_or_create_company`, `require_fields`, `send_report` — and the external `command`
//! robot, each run by the rules runtime against an in-memory store: their effects, and every
//! way they fail (an incident that says why, with nothing of theirs left behind).

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::command::{NewCompany, NewContact, NewLead, NewTask};
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::{Command, EntityKind, StreamId};
use leadflow_robots::Runtime;
use leadflow_store::Store;
use leadflow_testkit::{
    Db, assert_projections_replay, fields, lead_stream, load_lead as lead, monday_10 as t0,
    payloads, runtime, runtime_with, types,
};
use serde_json::{Value, json};

const INN: &str = "7707083893";
const OTHER_INN: &str = "7736207543";
const BIK: &str = "044525225";
const ACCOUNT: &str = "40702810938000012345";

/// A fresh store on a file with the rule set activated at `t0`: what happens from now on
/// fires rules. The `Db` reads its tables.
fn store(rt: &Runtime) -> (Db, Store) {
    let db = Db::new();
    let mut store = db.open();
    rt.activate(&mut store, t0()).unwrap();
    (db, store)
}

/// Runs a command as `admin` (a human, so rules react to it); returns its stream.
fn exec(store: &mut Store, rt: &Runtime, at: DateTime<Utc>, cmd: Command) -> StreamId {
    leadflow_testkit::exec(store, rt.config(), at, &cmd).stream
}

/// A lead with a name and phone, qualified (everything `qualified` requires), for ivanov,
/// with `extra` custom fields.
fn qualified_lead(extra: &[(&str, Value)]) -> NewLead {
    let mut f = fields(&[
        ("material", json!("granite")),
        ("dimensions", json!("3000x600")),
        ("budget", json!("150000")),
        ("urgency", json!("this_month")),
    ]);
    f.extend(fields(extra));
    NewLead {
        title: Some("Countertop".into()),
        name: Some("Ivan Petrov".into()),
        phones: vec!["+7 912 000-00-01".into()],
        source: Some("web_form".into()),
        responsible: Some(EmployeeId("ivanov".into())),
        stage: Some("qualified".into()),
        fields: f,
        ..Default::default()
    }
}

/// `(kind, employee, text)` of every incident, in order.
fn incidents(db: &Db) -> Vec<(String, Option<String>, String)> {
    db.rows("SELECT kind, employee, text FROM incidents ORDER BY position")
}

/// The one robot failure recorded; panics unless there is exactly one incident.
fn failure(db: &Db) -> String {
    let all = incidents(db);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].0, "robot_failed", "{all:?}");
    all[0].2.clone()
}

/// `(employee, text)` of every inbox message, in order.
fn inbox(db: &Db) -> Vec<(String, String)> {
    db.rows("SELECT employee, text FROM inbox ORDER BY position")
}

fn on_created(robot: &str, params: &str) -> String {
    format!(
        "[[rules]]\nid = \"r\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\n[[rules.robots]]\nrobot = \"{robot}\"\n{params}\n"
    )
}

// ---- convert_lead --------------------------------------------------------------------------

#[test]
fn convert_lead_creates_and_links_every_combination_of_contact_company_and_deal() {
    for combo in 0..8 {
        let (contact, company, deal) = (combo & 1 != 0, combo & 2 != 0, combo & 4 != 0);
        let rt = runtime(&on_created(
            "convert_lead",
            &format!(
                "contact = {contact}\ncompany = {company}\ndeal = {deal}\npipeline = \"goods\""
            ),
        ));
        let (db, mut store) = store(&rt);
        let id = exec(
            &mut store,
            &rt,
            t0(),
            Command::CreateLead(qualified_lead(&[
                ("company_name", json!("Stone LLC")),
                ("inn", json!(INN)),
                ("bik", json!(BIK)),
                ("bank_account", json!(ACCOUNT)),
            ])),
        )
        .id;
        rt.process(&mut store, t0()).unwrap();
        let case = format!("contact={contact} company={company} deal={deal}");
        assert!(incidents(&db).is_empty(), "{case}: {:?}", incidents(&db));
        assert_eq!(
            db.count("SELECT count(*) FROM contacts"),
            contact as i64,
            "{case}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM companies"),
            company as i64,
            "{case}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM deals"),
            deal as i64,
            "{case}"
        );
        let l = lead(&store, id);
        assert_eq!(l.stage.as_str(), "converted", "{case}");
        assert_eq!(l.contact, contact.then_some(1), "{case}");
        assert_eq!(l.company, company.then_some(1), "{case}");
        if contact {
            let (name, phones, company_id): (String, String, Option<i64>) =
                db.row("SELECT name, phones, company_id FROM contacts");
            assert_eq!(name, "Ivan Petrov", "{case}");
            assert_eq!(phones, r#"["+79120000001"]"#, "{case}");
            assert_eq!(company_id, company.then_some(1), "{case}");
        }
        if company {
            let row: (String, String, String, String) =
                db.row("SELECT name, inn, bik, bank_account FROM companies");
            assert_eq!(
                row,
                ("Stone LLC".into(), INN.into(), BIK.into(), ACCOUNT.into()),
                "{case}"
            );
        }
        if deal {
            let row: (String, String, String, String, Option<i64>, Option<i64>, i64) = db.row("SELECT title, pipeline, stage, responsible, contact_id, company_id, lead_id FROM deals");
            assert_eq!(
                row,
                (
                    "Countertop".into(),
                    "goods".into(),
                    "new".into(),
                    "kuznetsov".into(),
                    contact.then_some(1),
                    company.then_some(1),
                    id
                ),
                "{case}"
            );
        }
        assert_projections_replay(&mut store);
    }
}

#[test]
fn convert_lead_attaches_the_existing_client_instead_of_duplicating_it() {
    let rt = runtime(&on_created(
        "convert_lead",
        "contact = true\ncompany = true\ndeal = true\nattach_existing = true\npipeline = \"services\"\nassign = \"least_loaded\"",
    ));
    let (db, mut store) = store(&rt);
    // Known before: a contact with the same phone written differently, a company with the INN.
    let known_contact = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateContact(NewContact {
            name: "I. Petrov".into(),
            phones: vec!["8 (912) 000-00-01".into()],
            ..Default::default()
        }),
    );
    let known_company = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateCompany(NewCompany {
            name: "Stone".into(),
            inn: Some(INN.into()),
            ..Default::default()
        }),
    );
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(qualified_lead(&[("inn", json!(INN))])),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    assert!(incidents(&db).is_empty(), "{:?}", incidents(&db));
    assert_eq!(db.count("SELECT count(*) FROM contacts"), 1);
    assert_eq!(db.count("SELECT count(*) FROM companies"), 1);
    let l = lead(&store, id);
    assert_eq!(l.contact, Some(known_contact.id));
    assert_eq!(l.company, Some(known_company.id));
    assert_eq!(l.stage.as_str(), "converted");
    let (contact, company, responsible): (i64, i64, String) =
        db.row("SELECT contact_id, company_id, responsible FROM deals WHERE pipeline = 'services'");
    assert_eq!((contact, company), (known_contact.id, known_company.id));
    // Least loaded in the services team: nobody has a deal, so the first member by id.
    assert_eq!(responsible, "lebedev");
}

#[test]
fn convert_lead_uses_the_leads_linked_client_and_copies_fields_to_the_deal() {
    let config = format!(
        "{DEFAULT_CONFIG}\n[[fields]]\nid = \"price\"\nentity = \"lead\"\ntype = \"money\"\nlabel = \"Price\"\n\n\
         [[fields]]\nid = \"price\"\nentity = \"deal\"\ntype = \"money\"\nlabel = \"Price\"\n\n\
         [[fields]]\nid = \"installation\"\nentity = \"lead\"\ntype = \"bool\"\nlabel = \"Installation\"\n"
    );
    let rt = runtime_with(
        &config,
        &on_created(
            "convert_lead",
            "contact = true\ndeal = true\nattach_existing = true\ncopy_fields = [\"price\", \"installation\"]",
        ),
    );
    let (db, mut store) = store(&rt);
    let known = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateContact(NewContact {
            name: "Someone else".into(),
            ..Default::default()
        }),
    );
    let mut new = qualified_lead(&[("price", json!("1250.50")), ("installation", json!(true))]);
    new.contact = Some(known.id);
    let id = exec(&mut store, &rt, t0(), Command::CreateLead(new)).id;
    rt.process(&mut store, t0()).unwrap();
    assert!(incidents(&db).is_empty(), "{:?}", incidents(&db));
    assert_eq!(db.count("SELECT count(*) FROM contacts"), 1);
    let (pipeline, contact, fields): (String, i64, String) =
        db.row("SELECT pipeline, contact_id, fields FROM deals");
    // The default deal pipeline is the first one; money keeps its minor units.
    assert_eq!(pipeline, "goods");
    assert_eq!(contact, known.id);
    assert_eq!(
        serde_json::from_str::<Value>(&fields).unwrap(),
        json!({ "installation": true, "price": 125050 })
    );
    assert_eq!(lead(&store, id).stage.as_str(), "converted");
}

#[test]
fn convert_lead_says_everything_that_is_missing_and_creates_nothing() {
    let rt = runtime(&on_created(
        "convert_lead",
        "contact = true\ncompany = true\ndeal = true",
    ));
    let (db, mut store) = store(&rt);
    let mut new = qualified_lead(&[]);
    new.name = None;
    let id = exec(&mut store, &rt, t0(), Command::CreateLead(new)).id;
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains(&format!(
            "convert_lead cannot convert lead-{id}: a company needs field 'company_name' or 'inn' filled; a contact needs field 'name' filled"
        )),
        "{text}"
    );
    assert_eq!(db.count("SELECT count(*) FROM contacts"), 0);
    assert_eq!(db.count("SELECT count(*) FROM companies"), 0);
    assert_eq!(db.count("SELECT count(*) FROM deals"), 0);
    assert_eq!(lead(&store, id).stage.as_str(), "qualified");
}

#[test]
fn convert_lead_refuses_a_company_with_a_bad_inn_or_account() {
    let rt = runtime(&on_created("convert_lead", "company = true"));
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(qualified_lead(&[
            ("inn", json!("7707083894")),
            ("bank_account", json!(ACCOUNT)),
        ])),
    );
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains(
            "the company's field 'inn': invalid INN '7707083894': check digit does not match"
        ),
        "{text}"
    );
    assert!(
        text.contains("field 'bank_account': is filled but 'bik' is not"),
        "{text}"
    );
    assert_eq!(db.count("SELECT count(*) FROM companies"), 0);
}

#[test]
fn convert_lead_rolls_back_what_it_made_when_the_engine_refuses_a_step() {
    // The lead's responsible works the first line, not the goods team: the deal is refused
    // after the contact was created, and the contact goes too.
    let rt = runtime(&on_created(
        "convert_lead",
        "contact = true\ndeal = true\nassign = \"lead_responsible\"",
    ));
    let (db, mut store) = store(&rt);
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(qualified_lead(&[])),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains("employee 'ivanov' is not in team 'goods'"),
        "{text}"
    );
    assert_eq!(db.count("SELECT count(*) FROM contacts"), 0);
    assert_eq!(db.count("SELECT count(*) FROM deals"), 0);
    assert_eq!(
        types(&store, lead_stream(id)),
        ["lead.created", "incident.recorded"]
    );
    assert_projections_replay(&mut store);
}

// ---- detect_repeat -------------------------------------------------------------------------

/// A contact (phone), a company (INN) and an earlier lead (e-mail), made before the rules
/// were activated; then a lead that matches all three.
fn repeat_setup(rules: &str) -> (Runtime, Db, Store, i64, i64) {
    let rt = runtime(rules);
    let db = Db::new();
    let mut store = db.open();
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateContact(NewContact {
            name: "Ivan".into(),
            phones: vec!["+7 912 000-00-01".into()],
            ..Default::default()
        }),
    );
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateCompany(NewCompany {
            name: "Stone".into(),
            inn: Some(INN.into()),
            ..Default::default()
        }),
    );
    let earlier = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            emails: vec!["ivan@stone.ru".into()],
            ..Default::default()
        }),
    )
    .id;
    rt.activate(&mut store, t0()).unwrap();
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            phones: vec!["8 912 000 00 01".into()],
            emails: vec!["Ivan@Stone.RU".into()],
            fields: fields(&[("inn", json!(INN))]),
            ..Default::default()
        }),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    (rt, db, store, earlier, id)
}

#[test]
fn detect_repeat_finds_the_client_by_phone_email_and_inn_and_links_it() {
    let (_rt, db, store, earlier, id) = repeat_setup(&on_created("detect_repeat", ""));
    assert!(incidents(&db).is_empty(), "{:?}", incidents(&db));
    assert_eq!(
        payloads(&store, lead_stream(id), "lead.repeat_detected"),
        [
            json!({ "by": ["phone", "email", "inn"], "contacts": [1], "companies": [1], "leads": [earlier] })
        ]
    );
    let l = lead(&store, id);
    assert_eq!((l.contact, l.company), (Some(1), Some(1)));
    assert_eq!(
        types(&store, lead_stream(id)),
        ["lead.created", "lead.repeat_detected", "lead.updated"]
    );
}

#[test]
fn detect_repeat_matches_only_what_by_names() {
    let (_rt, _db, store, earlier, id) =
        repeat_setup(&on_created("detect_repeat", "by = [\"email\"]"));
    assert_eq!(
        payloads(&store, lead_stream(id), "lead.repeat_detected"),
        [json!({ "by": ["email"], "leads": [earlier] })]
    );
    // The earlier lead has no Client to pass on.
    let l = lead(&store, id);
    assert_eq!((l.contact, l.company), (None, None));
}

#[test]
fn detect_repeat_does_not_repeat_itself_when_nothing_changed() {
    let rules = format!(
        "{}\n{}",
        on_created("detect_repeat", ""),
        on_created("detect_repeat", "").replace("id = \"r\"", "id = \"again\"")
    );
    let (_rt, _db, store, _earlier, id) = repeat_setup(&rules);
    assert_eq!(
        payloads(&store, lead_stream(id), "lead.repeat_detected").len(),
        1
    );
}

#[test]
fn detect_repeat_appends_nothing_for_a_new_client() {
    let rt = runtime(&on_created("detect_repeat", ""));
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateContact(NewContact {
            name: "Someone".into(),
            phones: vec!["+7 912 999-99-99".into()],
            ..Default::default()
        }),
    );
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            phones: vec!["+7 912 000-00-01".into()],
            fields: fields(&[("inn", json!(OTHER_INN))]),
            ..Default::default()
        }),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    assert_eq!(types(&store, lead_stream(id)), ["lead.created"]);
    assert!(incidents(&db).is_empty());
}

#[test]
fn detect_repeat_fails_on_an_unknown_match_kind() {
    let rt = runtime(&on_created("detect_repeat", "by = [\"phone\", \"fax\"]"));
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead::default()),
    );
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains("detect_repeat: 'by' has \"fax\"; expected phone, email or inn"),
        "{text}"
    );
}

#[test]
fn detect_repeat_fails_on_a_deal() {
    let rules = "[[rules]]\nid = \"r\"\ntrigger = { on = \"created\", entity = \"deal\" }\n[[rules.robots]]\nrobot = \"detect_repeat\"\n";
    let rt = runtime(rules);
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateDeal(leadflow_engine::command::NewDeal {
            title: "Sink".into(),
            ..Default::default()
        }),
    );
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains("detect_repeat works on leads, but the rule is about deal-1"),
        "{text}"
    );
}

// ---- find_or_create_company ----------------------------------------------------------------

fn company_lead(store: &mut Store, rt: &Runtime, extra: &[(&str, Value)]) -> i64 {
    exec(
        store,
        rt,
        t0(),
        Command::CreateLead(NewLead {
            title: Some("Office kitchen".into()),
            responsible: Some(EmployeeId("petrova".into())),
            client_type: Some("legal".into()),
            fields: fields(extra),
            ..Default::default()
        }),
    )
    .id
}

#[test]
fn find_or_create_company_creates_a_checked_company_and_links_it() {
    let rt = runtime(&on_created("find_or_create_company", ""));
    let (db, mut store) = store(&rt);
    let id = company_lead(
        &mut store,
        &rt,
        &[
            ("company_name", json!("Stone LLC")),
            ("inn", json!(format!(" {INN} "))),
            ("bik", json!(BIK)),
            ("bank_account", json!(ACCOUNT)),
        ],
    );
    rt.process(&mut store, t0()).unwrap();
    assert!(incidents(&db).is_empty(), "{:?}", incidents(&db));
    let row: (i64, String, String, String, String, String) =
        db.row("SELECT id, name, inn, bik, bank_account, responsible FROM companies");
    assert_eq!(
        row,
        (
            1,
            "Stone LLC".into(),
            INN.into(),
            BIK.into(),
            ACCOUNT.into(),
            "petrova".into()
        )
    );
    assert_eq!(lead(&store, id).company, Some(1));
}

#[test]
fn find_or_create_company_finds_the_company_by_inn_and_fills_its_blanks() {
    let rt = runtime(&on_created("find_or_create_company", ""));
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateCompany(NewCompany {
            name: "Stone".into(),
            inn: Some(INN.into()),
            ..Default::default()
        }),
    );
    let id = company_lead(
        &mut store,
        &rt,
        &[
            ("inn", json!(INN)),
            ("bik", json!(BIK)),
            ("bank_account", json!(ACCOUNT)),
        ],
    );
    rt.process(&mut store, t0()).unwrap();
    assert!(incidents(&db).is_empty(), "{:?}", incidents(&db));
    assert_eq!(db.count("SELECT count(*) FROM companies"), 1);
    let (name, bik, account): (String, String, String) =
        db.row("SELECT name, bik, bank_account FROM companies");
    assert_eq!(
        (name.as_str(), bik.as_str(), account.as_str()),
        ("Stone", BIK, ACCOUNT)
    );
    assert_eq!(lead(&store, id).company, Some(1));
}

#[test]
fn find_or_create_company_names_the_bad_field_and_the_problem() {
    let wrong_account = "40702810038000012345";
    let cases: Vec<(Vec<(&str, Value)>, String)> = vec![
        (vec![], "has no INN: fill in field 'inn'".into()),
        (
            vec![("inn", json!("7707083894"))],
            "field 'inn': invalid INN '7707083894': check digit does not match".into(),
        ),
        (
            vec![("inn", json!("12345"))],
            "field 'inn': malformed INN '12345': expected 10 or 12 digits, got 5".into(),
        ),
        (
            vec![("inn", json!(INN)), ("bik", json!("04452522"))],
            "field 'bik': malformed BIK '04452522': expected 9 digits".into(),
        ),
        (
            vec![("inn", json!(INN)), ("bank_account", json!(ACCOUNT))],
            "field 'bank_account': is filled but 'bik' is not".into(),
        ),
        (
            vec![
                ("inn", json!(INN)),
                ("bik", json!(BIK)),
                ("bank_account", json!(wrong_account)),
            ],
            format!(
                "field 'bank_account': invalid bank account '{wrong_account}': check digit does not match BIK {BIK}"
            ),
        ),
    ];
    for (extra, want) in cases {
        let rt = runtime(&on_created("find_or_create_company", ""));
        let (db, mut store) = store(&rt);
        let id = company_lead(&mut store, &rt, &extra);
        rt.process(&mut store, t0()).unwrap();
        let text = failure(&db);
        assert!(
            text.contains(&format!("find_or_create_company: lead-{id}")) && text.contains(&want),
            "want {want:?} in {text:?}"
        );
        assert_eq!(db.count("SELECT count(*) FROM companies"), 0, "{want}");
        assert_eq!(lead(&store, id).company, None);
    }
}

// ---- require_fields ------------------------------------------------------------------------

const REQUIRE: &str = "fields = [\"material\", \"dimensions\", \"budget\", \"company_name|inn\"]\nincident = \"missing_fields\"";

#[test]
fn require_fields_asks_the_responsible_for_each_missing_field_and_records_an_incident() {
    let rt = runtime(&on_created("require_fields", REQUIRE));
    let (db, mut store) = store(&rt);
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            title: Some("Countertop".into()),
            responsible: Some(EmployeeId("ivanov".into())),
            fields: fields(&[("budget", json!("90000"))]),
            ..Default::default()
        }),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    let want =
        format!("Fill in on Countertop (lead-{id}): material, dimensions, company_name or inn");
    assert_eq!(inbox(&db), [("ivanov".to_owned(), want.clone())]);
    assert_eq!(
        incidents(&db),
        [("missing_fields".to_owned(), Some("ivanov".to_owned()), want)]
    );
}

#[test]
fn require_fields_is_quiet_when_everything_is_filled_or_the_condition_does_not_hold() {
    for (params, extra) in [
        (REQUIRE.to_owned(), vec![("inn", json!(INN))]),
        (
            format!("{REQUIRE}\nwhen = 'lead.client_type == \"legal\"'"),
            vec![],
        ),
    ] {
        let rt = runtime(&on_created("require_fields", &params));
        let (db, mut store) = store(&rt);
        let mut new = qualified_lead(&extra);
        new.client_type = Some("individual".into());
        let id = exec(&mut store, &rt, t0(), Command::CreateLead(new)).id;
        rt.process(&mut store, t0()).unwrap();
        assert_eq!(types(&store, lead_stream(id)), ["lead.created"], "{params}");
        assert!(inbox(&db).is_empty());
    }
}

#[test]
fn require_fields_checks_when_the_condition_holds() {
    let rt = runtime(&on_created(
        "require_fields",
        "fields = [\"company_name|inn\", \"bank_account\", \"bik\"]\nwhen = 'lead.client_type == \"legal\"'",
    ));
    let (db, mut store) = store(&rt);
    let mut new = qualified_lead(&[("inn", json!(INN))]);
    new.client_type = Some("legal".into());
    let id = exec(&mut store, &rt, t0(), Command::CreateLead(new)).id;
    rt.process(&mut store, t0()).unwrap();
    assert_eq!(
        inbox(&db),
        [(
            "ivanov".to_owned(),
            format!("Fill in on Countertop (lead-{id}): bank_account, bik")
        )]
    );
    // No incident kind given: none recorded.
    assert!(incidents(&db).is_empty());
}

#[test]
fn require_fields_fails_when_nobody_is_responsible_to_ask() {
    let rt = runtime(&on_created("require_fields", REQUIRE));
    let (db, mut store) = store(&rt);
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            fields: fields(&[("material", json!("wood")), ("dimensions", json!("1x1"))]),
            ..Default::default()
        }),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains(&format!(
            "require_fields: lead-{id} has nobody responsible to ask; missing: budget, company_name or inn"
        )),
        "{text}"
    );
    assert!(inbox(&db).is_empty());
}

// ---- send_report ---------------------------------------------------------------------------

fn on_schedule(robot: &str, params: &str) -> String {
    format!(
        "[[rules]]\nid = \"kpi\"\ntrigger = {{ on = \"schedule\", cron = \"0 0 18 * * Mon-Fri\" }}\n[[rules.robots]]\nrobot = \"{robot}\"\n{params}\n"
    )
}

/// 18:00 Moscow on the day of `t0`.
fn evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap()
}

/// The day's work: ivanov got two leads today (one converted) and one two days ago, and has
/// an overdue task; petrova got one lead today, lost as spam.
fn report_day(rt: &Runtime) -> (Db, Store) {
    let db = Db::new();
    let mut store = db.open();
    let old = exec(
        &mut store,
        rt,
        t0() - Duration::days(2),
        Command::CreateLead(qualified_lead(&[])),
    );
    rt.activate(&mut store, t0()).unwrap();
    let _ = old;
    let won = exec(
        &mut store,
        rt,
        t0(),
        Command::CreateLead(qualified_lead(&[])),
    )
    .id;
    exec(
        &mut store,
        rt,
        t0(),
        Command::CreateLead(qualified_lead(&[])),
    );
    exec(
        &mut store,
        rt,
        t0() + Duration::hours(1),
        Command::MoveLead {
            id: won,
            stage: "converted".into(),
            reason: None,
        },
    );
    let mut theirs = qualified_lead(&[]);
    theirs.responsible = Some(EmployeeId("petrova".into()));
    let lost = exec(&mut store, rt, t0(), Command::CreateLead(theirs)).id;
    exec(
        &mut store,
        rt,
        t0() + Duration::hours(2),
        Command::MoveLead {
            id: lost,
            stage: "junk".into(),
            reason: Some("spam".into()),
        },
    );
    exec(
        &mut store,
        rt,
        t0(),
        Command::CreateTask(NewTask {
            kind: "call".into(),
            title: "Call back".into(),
            assignee: EmployeeId("ivanov".into()),
            due_at: t0() + Duration::hours(1),
            lead: Some(won),
            deal: None,
        }),
    );
    (db, store)
}

/// The numbers of the table line that starts with `who`.
fn table_line(text: &str, who: &str) -> Vec<i64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(who))
        .unwrap_or_else(|| panic!("no line for {who} in\n{text}"));
    line[who.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn system() -> StreamId {
    StreamId::new(EntityKind::System, 1)
}

#[test]
fn send_report_gives_each_manager_the_kpi_of_their_teams() {
    let rt = runtime(&on_schedule("send_report", "to = \"manager\""));
    let (db, mut store) = report_day(&rt);
    let report = rt.tick(&mut store, evening()).unwrap();
    assert_eq!(report.incidents, 0, "{:?}", incidents(&db));
    let sent = payloads(&store, system(), "report.sent");
    let to: Vec<&Value> = sent.iter().map(|s| &s["to"]).collect();
    assert_eq!(to, [&json!(["smirnova"]), &json!(["volkov"])]);
    let row = |who: &str| {
        sent[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["employee"] == who)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {who}: {sent:?}"))
    };
    assert_eq!(
        row("ivanov"),
        json!({ "employee": "ivanov", "leads_in": 2, "converted": 1, "lost": 0, "overdue": 1 })
    );
    assert_eq!(
        row("petrova"),
        json!({ "employee": "petrova", "leads_in": 1, "converted": 0, "lost": 1, "overdue": 0 })
    );
    assert_eq!(sent[0]["since"], json!("2026-03-01T15:00:00Z"));
    assert_eq!(sent[0]["rule"], json!("kpi"));
    // Volkov's goods team did nothing with leads today.
    assert!(
        sent[1]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["leads_in"] == 0 && r["overdue"] == 0),
        "{sent:?}"
    );
    let messages = inbox(&db);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let (to, text) = &messages[0];
    assert_eq!(to, "smirnova");
    assert!(
        text.starts_with("KPI 2026-03-01 18:00 – 2026-03-02 18:00 (Europe/Moscow)\n"),
        "{text}"
    );
    assert_eq!(table_line(text, "Ivan Ivanov"), [2, 1, 0, 1], "{text}");
    assert_eq!(table_line(text, "Anna Petrova"), [1, 0, 1, 0], "{text}");
    assert_eq!(table_line(text, "total"), [3, 1, 1, 1], "{text}");
    assert_projections_replay(&mut store);
}

#[test]
fn send_report_to_a_team_reaches_every_member() {
    let rt = runtime(&on_schedule(
        "send_report",
        "to = \"team\"\nteam = \"first_line\"\nperiod = \"12h\"",
    ));
    let (db, mut store) = report_day(&rt);
    rt.tick(&mut store, evening()).unwrap();
    let sent = payloads(&store, system(), "report.sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["to"], json!(["ivanov", "petrova", "sidorov"]));
    let to: Vec<String> = inbox(&db).into_iter().map(|(e, _)| e).collect();
    assert_eq!(to, ["ivanov", "petrova", "sidorov"]);
}

#[test]
fn send_report_to_an_employee_covers_the_team_given() {
    let rt = runtime(&on_schedule(
        "send_report",
        "to = \"employee\"\nemployee = \"admin\"\nteam = \"first_line\"",
    ));
    let (_db, mut store) = report_day(&rt);
    rt.tick(&mut store, evening()).unwrap();
    let sent = payloads(&store, system(), "report.sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["to"], json!(["admin"]));
    let rows: Vec<&Value> = sent[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["employee"])
        .collect();
    assert_eq!(
        rows,
        [&json!("ivanov"), &json!("petrova"), &json!("sidorov")]
    );
}

#[test]
fn send_report_fails_without_anyone_to_send_to() {
    for (params, want) in [
        (
            "to = \"team\"",
            "send_report: to = \"team\" needs team = \"...\"",
        ),
        (
            "to = \"manager\"\nteam = \"management\"",
            "send_report: team 'management' has no manager to send the report to",
        ),
        (
            "to = \"employee\"",
            "send_report: to = \"employee\" needs employee = \"...\"",
        ),
    ] {
        let rt = runtime(&on_schedule("send_report", params));
        let (db, mut store) = report_day(&rt);
        rt.tick(&mut store, evening()).unwrap();
        let text = failure(&db);
        assert!(text.contains(want), "want {want:?} in {text:?}");
        assert!(payloads(&store, system(), "report.sent").is_empty());
        assert!(inbox(&db).is_empty());
    }
}

// ---- command -------------------------------------------------------------------------------

fn command_rules(script: &str, timeout: Option<&str>) -> String {
    let script = serde_json::to_string(script).unwrap();
    let timeout = timeout.map_or(String::new(), |t| format!("timeout = \"{t}\"\n"));
    format!(
        "[[rules]]\nid = \"ext\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {script}]\n{timeout}"
    )
}

/// Runs a `command` rule on a new lead of ivanov's (with a phone): the lead's id.
fn run_command(script: &str, timeout: Option<&str>) -> (Db, Store, i64) {
    let rt = runtime(&command_rules(script, timeout));
    let (db, mut store) = store(&rt);
    let id = exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead {
            title: Some("Countertop".into()),
            phones: vec!["+7 912 000-00-01".into()],
            responsible: Some(EmployeeId("ivanov".into())),
            ..Default::default()
        }),
    )
    .id;
    rt.process(&mut store, t0()).unwrap();
    (db, store, id)
}

#[test]
fn command_gets_the_context_and_its_actions_are_carried_out() {
    let script = r#"
input=$(cat)
case "$input" in
  *'"rule":"ext"'*'"type":"lead.created"'*'"vars":'*'"title":"Countertop"'*) ;;
  *) echo "unexpected input: $input" >&2; exit 9 ;;
esac
cat <<'EOF'
{"actions": [
  {"set_field": {"field": "material", "value": "granite"}},
  {"set_stage": {"stage": "in_work"}},
  {"notify": {"to": "responsible", "text": "External check done for {lead.title}", "priority": "high"}},
  {"incident": {"kind": "external_check", "text": "checked"}}
]}
EOF
"#;
    let (db, store, id) = run_command(script, None);
    assert_eq!(
        incidents(&db),
        [(
            "external_check".to_owned(),
            Some("ivanov".to_owned()),
            "checked".to_owned()
        )]
    );
    assert_eq!(
        types(&store, lead_stream(id)),
        // The program ran after the commit that recorded its request; its answer's actions
        // were applied in reaction to its outcome.
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "lead.updated",
            "lead.stage_changed",
            "notification.queued",
            "incident.recorded"
        ]
    );
    let l = lead(&store, id);
    assert_eq!(l.fields.get("material"), Some(&json!("granite")));
    assert_eq!(l.stage.as_str(), "in_work");
    assert_eq!(
        inbox(&db),
        [(
            "ivanov".to_owned(),
            "External check done for Countertop".to_owned()
        )]
    );
}

#[test]
fn command_that_exits_non_zero_is_an_incident_with_its_stderr() {
    let (db, store, id) = run_command("cat >/dev/null; echo 'no licence' >&2; exit 3", None);
    let text = failure(&db);
    assert!(
        text.contains("rule 'ext', robot 'command': command 'sh -c cat >/dev/null;"),
        "{text}"
    );
    assert!(
        text.contains("failed (exit status: 3): no licence"),
        "{text}"
    );
    assert_eq!(
        types(&store, lead_stream(id)),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "incident.recorded"
        ]
    );
}

#[test]
fn command_that_runs_too_long_is_killed() {
    let started = std::time::Instant::now();
    let (db, _store, _) = run_command("sleep 5; echo '{\"actions\": []}'", Some("1s"));
    let text = failure(&db);
    assert!(
        text.contains("did not finish within 1s; it was killed"),
        "{text}"
    );
    // Killed at the limit: nothing waited for the sleep.
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[test]
fn command_output_that_is_not_the_expected_json_is_an_incident() {
    for (script, want) in [
        ("echo 'all good'", "its output is not JSON"),
        ("true", "printed nothing; expected {\"actions\": [...]}"),
        ("echo '[1, 2]'", "its output is not a JSON object"),
        ("echo '{\"done\": true}'", "its output has no \"actions\""),
        (
            "echo '{\"actions\": [{\"set_field\": {\"field\": \"material\", \"value\": \"wood\"}}, {\"launch\": {}}]}'",
            "action 2 (launch): unknown action 'launch': expected set_field, set_stage, notify or incident",
        ),
        (
            "echo '{\"actions\": [{\"set_stage\": {\"stage\": \"orbit\"}}]}'",
            "action 1 (set_stage): unknown stage 'orbit' in pipeline 'lead'",
        ),
        (
            "echo '{\"actions\": [{\"notify\": {\"to\": \"everyone\", \"text\": \"hi\"}}]}'",
            "action 1 (notify): 'to' must be responsible, manager, team or employee",
        ),
    ] {
        let (db, store, id) = run_command(script, None);
        let text = failure(&db);
        assert!(text.contains(want), "{script}: want {want:?} in {text:?}");
        // The first action of a failing list is rolled back with the rest.
        assert_eq!(
            types(&store, lead_stream(id)),
            [
                "lead.created",
                "robot.requested",
                "robot.started",
                "robot.completed",
                "incident.recorded"
            ],
            "{script}"
        );
    }
}

#[test]
fn command_that_cannot_start_is_an_incident() {
    let rules = "[[rules]]\nid = \"ext\"\ntrigger = { on = \"created\", entity = \"lead\" }\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"/nonexistent/robot\"\n";
    let rt = runtime(rules);
    let (db, mut store) = store(&rt);
    exec(
        &mut store,
        &rt,
        t0(),
        Command::CreateLead(NewLead::default()),
    );
    rt.process(&mut store, t0()).unwrap();
    let text = failure(&db);
    assert!(
        text.contains("command '/nonexistent/robot': cannot start"),
        "{text}"
    );
}
