use super::*;

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
