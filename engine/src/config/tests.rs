use super::*;
use crate::ids::StageId;

fn errors(text: &str) -> Vec<String> {
    Config::from_toml("x.toml", text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const MINIMAL: &str = r#"
[[pipelines]]
id = "lead"
name = "Leads"
entity = "lead"
stages = [ { id = "new", name = "New" }, { id = "done", name = "Done", semantic = "success" } ]
"#;

#[test]
fn the_default_config_loads() {
    let config = Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap();
    assert_eq!(config.lead_pipeline().id.as_str(), "lead");
    assert!(config.pipeline(&"goods".into()).is_some());
    assert!(config.pipeline(&"services".into()).is_some());
}

#[test]
fn a_minimal_config_loads() {
    let config = Config::from_toml("x.toml", MINIMAL).unwrap();
    assert_eq!(config.lead_pipeline().first_stage().id.as_str(), "new");
    assert_eq!(config.currency, "RUB");
}

#[test]
fn toml_syntax_errors_carry_line_and_column() {
    let errs = errors("currency = \"RUB\"\n[[employees]\nid = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("x.toml:2:"), "{errs:?}");
}

#[test]
fn unknown_keys_are_reported_where_they_are() {
    let errs = errors(&format!(
        "{MINIMAL}\n[[employees]]\nid = \"a\"\nname = \"A\"\ncolour = \"red\"\n"
    ));
    assert!(errs[0].contains("unknown field `colour`"), "{errs:?}");
}

#[test]
fn every_reference_error_is_reported_at_once() {
    let text = format!(
        "{MINIMAL}
[[employees]]
id = \"petrova\"
name = \"Petrova\"
team = \"nobody\"
manager = \"ghost\"

[[teams]]
id = \"sales\"
name = \"Sales\"
pipelines = [\"missing\"]
"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("x.toml:11:8: unknown team 'nobody'")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("unknown employee 'ghost'")));
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown pipeline 'missing'"))
    );
}

#[test]
fn stage_requirements_must_name_known_fields() {
    let text = MINIMAL.replace(
        "{ id = \"done\", name = \"Done\", semantic = \"success\" }",
        "{ id = \"done\", name = \"Done\", semantic = \"success\", required = [\"budget\"], target = \"2 hours\" }",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown lead field 'budget'")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("bad duration '2 hours'")),
        "{errs:?}"
    );
}

#[test]
fn a_config_needs_exactly_one_lead_pipeline() {
    let errs = errors("currency = \"RUB\"\n");
    assert!(
        errs[0].contains("exactly one pipeline must have entity = \"lead\""),
        "{errs:?}"
    );
}

#[test]
fn the_calendar_is_read_and_checked() {
    let config = Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap();
    assert_eq!(config.calendar.timezone.name(), "Europe/Moscow");
    assert_eq!(config.calendar.day_length(), Duration::hours(8));
    let errs = errors(&format!(
        "{MINIMAL}\n[calendar]\ntimezone = \"Mars/Olympus\"\ndays = [\"mon\", \"funday\"]\nhours = [\"14:00-18:00\", \"09:00-13:00\", \"late\"]\nholidays = [\"2026-02-30\"]\n"
    ));
    assert_eq!(errs.len(), 5, "{errs:?}");
    assert!(
        errs[0].contains("x.toml:9:12: unknown time zone 'Mars/Olympus'"),
        "{errs:?}"
    );
    assert!(errs[1].contains("unknown weekday 'funday'"), "{errs:?}");
    assert!(
        errs[2].contains("working hours '09:00-13:00' overlap"),
        "{errs:?}"
    );
    assert!(errs[3].contains("bad working hours 'late'"), "{errs:?}");
    assert!(errs[4].contains("bad date '2026-02-30'"), "{errs:?}");
}

#[test]
fn the_bitrix24_section_maps_ids_to_what_the_config_defines() {
    let text = format!(
        "sources = [\"web_form\", \"call\"]
{MINIMAL}
[[employees]]
id = \"petrova\"
name = \"Petrova\"
[[fields]]
id = \"last_name\"
entity = \"lead\"
type = \"string\"
[bitrix24]
users = {{ \"7\" = \"petrova\" }}
statuses = {{ START = \"new\" }}
sources = {{ WEB = \"web_form\" }}
[bitrix24.fields.lead]
LAST_NAME = \"last_name\"
"
    );
    let config = Config::from_toml("x.toml", &text).unwrap();
    let b = &config.bitrix24;
    assert_eq!(b.users.get(&7), Some(&EmployeeId::from("petrova")));
    assert_eq!(b.statuses.get("START"), Some(&StageId::from("new")));
    assert_eq!(b.sources.get("WEB").map(String::as_str), Some("web_form"));
    assert_eq!(
        b.fields[&EntityKind::Lead]
            .get("LAST_NAME")
            .map(String::as_str),
        Some("last_name")
    );
}

#[test]
fn bitrix24_section_errors_name_the_place_and_the_unknown_id() {
    let text = format!(
        "{MINIMAL}
[bitrix24]
users = {{ \"x\" = \"ghost\" }}
statuses = {{ NEW = \"nowhere\", done = \"done\" }}
categories = {{ \"1\" = \"lead\" }}
[bitrix24.fields.task]
UF_CRM_X = \"x\"
"
    );
    let errs = errors(&text);
    let line = |n: usize| format!("x.toml:{n}:");
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&line(9)) && e.contains("'x' is not a Bitrix24 user id")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown stage of the lead pipeline 'nowhere'")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("'done' is not a Bitrix24 id")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown deal pipeline 'lead'")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown entity 'task' in [bitrix24.fields]")),
        "{errs:?}"
    );
}

#[test]
fn a_stage_mapped_from_two_bitrix24_ids_is_refused() {
    let text = format!("{MINIMAL}\n[bitrix24]\nstatuses = {{ NEW = \"new\", START = \"new\" }}\n");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.contains("'new' is mapped twice")),
        "{errs:?}"
    );
}

#[test]
fn a_roles_section_replaces_a_default_role_and_adds_one() {
    use crate::access::{Action, Resource, Scope, Want};
    let text = format!(
        r#"{MINIMAL}
[roles.first_line]
description = "leads, and reading contacts"
scope = "all"
lead = ["read", "write"]
contact = ["read"]

[roles.bot]
intake = ["create"]
lead = ["create", "update"]
"#
    );
    let config = Config::from_toml("x.toml", &text).unwrap();
    let first = config.access.role("first_line").unwrap();
    assert_eq!(first.scope, Scope::All);
    assert!(first.allows(Resource::Contact, Action::Read));
    assert!(first.allows(Resource::Lead, Action::Move));
    assert!(
        !first.allows(Resource::Task, Action::Read),
        "replaced whole"
    );
    let bot = Want::new(Resource::Lead, Action::Update);
    assert!(config.access.check("bot", None, &bot).is_ok());
    assert!(config.access.role("admin").is_some(), "other defaults stay");
}

#[test]
fn unknown_resources_actions_and_scopes_in_roles_are_reported_where_they_are() {
    let text = format!(
        "{MINIMAL}\n[roles.x]\nscope = \"planet\"\ncontact = [\"read\", \"move\"]\nverify = [\"write\"]\nlead = [\"fly\"]\n"
    );
    let errs = errors(&text);
    let line = |n: usize| format!("x.toml:{n}:");
    let base = MINIMAL.lines().count() + 2;
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&line(base + 1)) && e.contains("unknown scope 'planet'")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("x.toml:{}:20:", base + 2))
                && e.contains(
                    "'move' does not apply to contact, which takes: read, create, update, delete"
                )),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&line(base + 3))
                && e.contains("'write' does not apply to verify")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&line(base + 4)) && e.contains("unknown action 'fly' on lead")),
        "{errs:?}"
    );
    let errs = errors(&format!("{MINIMAL}\n[roles.x]\ndeals = [\"read\"]\n"));
    assert!(
        errs[0].starts_with(&line(MINIMAL.lines().count() + 3))
            && errs[0].contains("unknown field `deals`"),
        "{errs:?}"
    );
    let errs = errors(&format!("{MINIMAL}\n[roles.Boss]\nlead = [\"read\"]\n"));
    assert!(errs[0].contains("role name 'Boss'"), "{errs:?}");
}

#[test]
fn the_roles_example_in_the_default_config_loads_when_uncommented() {
    let mut text = String::new();
    let mut inside = false;
    for line in DEFAULT_CONFIG.lines() {
        if line == "# [roles.first_line]" {
            inside = true;
        }
        if inside && !line.starts_with("# ") {
            inside = false;
        }
        text.push_str(if inside { &line[2..] } else { line });
        text.push('\n');
    }
    assert!(
        text.contains("\n[roles.first_line]\n"),
        "the example is there"
    );
    let config = Config::from_toml("leadflow.toml", &text).unwrap();
    let role = config.access.role("first_line").unwrap();
    assert!(role.allows(
        crate::access::Resource::Contact,
        crate::access::Action::Read
    ));
}

#[test]
fn the_delivery_section_loads_with_defaults_for_what_it_leaves_out() {
    let config = Config::from_toml("x.toml", MINIMAL).unwrap();
    assert_eq!(config.delivery, Delivery::default());
    let text = format!(
        "{MINIMAL}\n[delivery]\ntimeout = \"3s\"\nmax_attempts = 4\nbackoff_base = \"2s\"\n\n[delivery.smtp]\nhost = \"smtp.example.ru\"\nfrom = \"crm@example.ru\"\n"
    );
    let d = Config::from_toml("x.toml", &text).unwrap().delivery;
    assert_eq!(d.timeout, std::time::Duration::from_secs(3));
    assert_eq!(d.max_attempts, 4);
    assert_eq!(d.backoff_base, std::time::Duration::from_secs(2));
    assert_eq!(d.max_age, Delivery::default().max_age);
    let smtp = d.smtp.unwrap();
    assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::Starttls));
}

#[test]
fn every_bad_delivery_value_is_an_error_with_its_place() {
    let text = format!(
        "{MINIMAL}\n[delivery]\ntimeout = \"0s\"\nmax_attempts = 0\nbackoff_base = \"1h\"\nbackoff_max = \"1m\"\nsecret = \"short\"\n\n[delivery.smtp]\nhost = \"smtp\"\nfrom = \"nobody\"\ntls = \"ssl\"\nuser = \"u\"\n"
    );
    let errs = errors(&text).join("\n");
    for needle in [
        "delivery.timeout must be longer than 0s",
        "delivery.max_attempts must be between 1 and 1000",
        "delivery.backoff_max is shorter than delivery.backoff_base",
        "delivery.secret must be at least 16 characters",
        "delivery.smtp.from 'nobody' is not an e-mail address",
        "unknown delivery.smtp.tls 'ssl'",
        "both user and password",
    ] {
        assert!(errs.contains(needle), "{needle:?} not in:\n{errs}");
    }
    assert!(errs.lines().all(|l| l.starts_with("x.toml:")), "{errs}");
    let unknown = errors(&format!("{MINIMAL}\n[delivery]\ntimeot = \"3s\"\n")).join("\n");
    assert!(unknown.contains("timeot"), "{unknown}");
}

#[test]
fn a_teams_plan_is_read_and_must_be_positive() {
    let config = Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap();
    assert_eq!(config.teams[&TeamId::from("first_line")].plan, Some(40));
    assert_eq!(config.teams[&TeamId::from("management")].plan, None);
    let errs = errors(&format!(
        "{MINIMAL}\n[[teams]]\nid = \"sales\"\nname = \"Sales\"\nplan = 0\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("x.toml:11:8"), "{errs:?}");
    assert!(
        errs[0].contains("plan of team 'sales' must be a positive number of leads in work, not 0"),
        "{errs:?}"
    );
}

#[test]
fn the_dashboard_language_is_english_unless_ui_says_russian() {
    assert_eq!(
        Config::from_toml("x.toml", MINIMAL).unwrap().ui.language,
        Language::En
    );
    let ru = format!("{MINIMAL}\n[ui]\nlanguage = \"ru\"\n");
    assert_eq!(
        Config::from_toml("x.toml", &ru).unwrap().ui.language,
        Language::Ru
    );
    let errs = errors(&format!("{MINIMAL}\n[ui]\nlanguage = \"de\"\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("x.toml:9:") && errs[0].contains("unknown language 'de' in [ui]"),
        "{errs:?}"
    );
}
