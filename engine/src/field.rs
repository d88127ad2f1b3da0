//! Field values: custom field types, and the normalisation and validation of phones, e-mails,
//! INN, BIK and bank accounts.
//!
//! Values are kept as JSON in events and projections, always in their normal form: phones in
//! E.164 (`+<digits>`, with `;ext=N` for an extension) as libphonenumber's metadata reads
//! them, e-mails lowercased, money as integer minor units, dates as `YYYY-MM-DD`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text.
    String,
    /// A decimal number.
    Number,
    /// An amount of money, kept as integer minor units (kopecks, cents).
    Money,
    /// Yes or no.
    Bool,
    /// One of a fixed list of options.
    Enum,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A phone number, normalised to E.164 (`+<digits>`, `;ext=N` for an extension).
    Phone,
    /// An e-mail address, lowercased.
    Email,
}

impl FieldType {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Money => "money",
            FieldType::Bool => "bool",
            FieldType::Enum => "enum",
            FieldType::Date => "date",
            FieldType::Phone => "phone",
            FieldType::Email => "email",
        }
    }
}

/// Converts `raw` to the normal form of a field of type `ty`, or says what is wrong with it.
///
/// Text input is accepted for every type (that is what the CLI and CSV give); JSON numbers and
/// booleans are accepted where they fit.
pub fn normalize_value(ty: FieldType, options: &[String], raw: &Value) -> Result<Value, String> {
    let text = match raw {
        Value::String(s) => Some(s.trim()),
        _ => None,
    };
    match ty {
        FieldType::String => match raw {
            Value::String(s) => Ok(Value::String(s.clone())),
            other => Err(format!("expected text, got {}", json_kind(other))),
        },
        FieldType::Number => {
            let n = match (raw, text) {
                (Value::Number(n), _) => n.as_f64(),
                (_, Some(t)) => t.parse::<f64>().ok(),
                _ => None,
            };
            match n.filter(|n| n.is_finite()) {
                Some(n) => Ok(number_value(n)),
                None => Err(format!("expected a number, got {}", show(raw))),
            }
        }
        FieldType::Money => {
            let minor = match (raw, text) {
                (Value::Number(n), _) => match n.as_i64() {
                    Some(i) => i.checked_mul(100),
                    None => n.as_f64().and_then(|f| parse_money(&f.to_string())),
                },
                (_, Some(t)) => parse_money(t),
                _ => None,
            };
            minor
                .map(Value::from)
                .ok_or_else(|| format!("expected an amount like 1250.50, got {}", show(raw)))
        }
        FieldType::Bool => {
            let b = match (raw, text) {
                (Value::Bool(b), _) => Some(*b),
                (_, Some(t)) => match t.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "1" | "да" => Some(true),
                    "false" | "no" | "n" | "0" | "нет" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            b.map(Value::Bool)
                .ok_or_else(|| format!("expected yes or no, got {}", show(raw)))
        }
        FieldType::Enum => match text {
            Some(t) if options.iter().any(|o| o == t) => Ok(Value::String(t.to_owned())),
            _ => Err(format!(
                "expected one of {}, got {}",
                options.join(", "),
                show(raw)
            )),
        },
        FieldType::Date => {
            // A date is a calendar day, not an instant: no zone applies. Four-digit years
            // only, so stored dates sort as text (chrono would also take `+12345-01-01`).
            let four_digit =
                |d: &chrono::NaiveDate| (1000..=9999).contains(&chrono::Datelike::year(d));
            match text
                .and_then(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
                .filter(four_digit)
            {
                Some(d) => Ok(Value::String(d.format("%Y-%m-%d").to_string())),
                None => Err(format!(
                    "expected a date like 2026-03-01, got {}",
                    show(raw)
                )),
            }
        }
        FieldType::Phone => match text {
            Some(t) => normalize_phone(t).map(Value::String),
            None => Err(format!("expected a phone number, got {}", show(raw))),
        },
        FieldType::Email => match text {
            Some(t) => normalize_email(t).map(Value::String),
            None => Err(format!("expected an e-mail address, got {}", show(raw))),
        },
    }
}

fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// Parses `1250`, `1250.5`, `1 250,50` or `-3.10` into minor units (hundredths).
pub fn parse_money(text: &str) -> Option<i64> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '_')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let minor = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -minor } else { minor })
}

/// Formats minor units as `1250.50`.
pub fn format_money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The region a phone number without a country code is read in: Russia (`8 912 …`,
/// `912 …`).
pub const PHONE_REGION: phonenumber::country::Id = phonenumber::country::Id::RU;

/// A phone number read by libphonenumber's rules and metadata (the `phonenumber` crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// The line, in E.164: `+79378922084`. Repeat leads are matched on this alone.
    pub number: String,
    /// The extension (`доб. 12`, `ext. 12`), if any: `12`.
    pub extension: Option<String>,
}

impl Phone {
    /// The stored normal form: the E.164 number, followed by `;ext=12` (RFC 3966) when there
    /// is an extension.
    pub fn stored(&self) -> String {
        match &self.extension {
            Some(e) => format!("{};ext={e}", self.number),
            None => self.number.clone(),
        }
    }
}

/// Reads a phone number written any usual way — `8 (912) 345-67-89`, `+7 912 345 67 89`,
/// `9123456789`, `+44 20 7946 0958`, with an extension `доб. 12`, `ext. 12`, `x12` — and
/// checks it is a valid number of its country.
pub fn parse_phone(text: &str) -> Result<Phone, String> {
    let trimmed = text.trim();
    let bad = |why: &str| format!("malformed phone '{text}': {why}");
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    // The Russian word for an extension, which libphonenumber's patterns do not know.
    let lower = trimmed.to_lowercase();
    let prepared = match ["добавочный", "доб."]
        .iter()
        .chain(&["доб"])
        .find_map(|w| lower.find(w).map(|i| (i, w.len())))
    {
        // `to_lowercase` keeps the byte offsets of Cyrillic and ASCII text.
        Some((i, len)) if lower.len() == trimmed.len() => {
            format!("{} ext. {}", &trimmed[..i], &trimmed[i + len..])
        }
        _ => trimmed.to_owned(),
    };
    let number = phonenumber::parse(Some(PHONE_REGION), &prepared).map_err(|e| {
        bad(&match e {
            phonenumber::ParseError::NoNumber => "not a phone number".to_owned(),
            other => other.to_string(),
        })
    })?;
    if !number.is_valid() {
        return Err(bad(&format!(
            "not a valid number of country code +{}",
            number.code().value()
        )));
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    let number_part = e164.split(';').next().unwrap_or(&e164).to_owned();
    Ok(Phone {
        number: number_part,
        extension: number
            .extension()
            .map(|e| e.to_string())
            .filter(|e| !e.is_empty()),
    })
}

/// Loads libphonenumber's metadata now (it is parsed on first use: about 600 million
/// instructions, a fifth of a second on a fast machine), so that the first command with a
/// phone does not wait for it. The service calls it when it starts.
pub fn warm_up() {
    let _ = parse_phone("+7 901 000-00-00");
}

/// Normalises a phone number to its stored form: E.164 (`+79123456789`), with `;ext=12` when
/// it has an extension. Invalid numbers are refused with the reason.
pub fn normalize_phone(text: &str) -> Result<String, String> {
    parse_phone(text).map(|p| p.stored())
}

/// The part of a stored phone that identifies the line, for matching: E.164 without the
/// extension.
pub fn phone_key(stored: &str) -> &str {
    stored.split(';').next().unwrap_or(stored)
}

/// Normalises an e-mail address: trimmed and lowercased, with one `@` and a dotted domain.
pub fn normalize_email(text: &str) -> Result<String, String> {
    let email = text.trim().to_lowercase();
    let bad = || format!("malformed e-mail '{text}'");
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@');
    if local.is_empty() || !domain_ok || email.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err(bad());
    }
    Ok(email)
}

fn digits_of(text: &str) -> Option<Vec<u32>> {
    text.chars().map(|c| c.to_digit(10)).collect()
}

fn weighted(digits: &[u32], weights: &[u32]) -> u32 {
    digits.iter().zip(weights).map(|(d, w)| d * w).sum()
}

/// Checks a Russian taxpayer number (INN): 10 digits for a company, 12 for a person or sole
/// trader, with their check digits.
pub fn validate_inn(text: &str) -> Result<String, String> {
    let inn = text.trim();
    let d = digits_of(inn).ok_or_else(|| format!("malformed INN '{text}': digits only"))?;
    let ok = match d.len() {
        10 => weighted(&d, &[2, 4, 10, 3, 5, 9, 4, 6, 8]) % 11 % 10 == d[9],
        12 => {
            weighted(&d, &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) % 11 % 10 == d[10]
                && weighted(&d, &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) % 11 % 10 == d[11]
        }
        n => {
            return Err(format!(
                "malformed INN '{text}': expected 10 or 12 digits, got {n}"
            ));
        }
    };
    if ok {
        Ok(inn.to_owned())
    } else {
        Err(format!("invalid INN '{text}': check digit does not match"))
    }
}

/// Checks a Russian bank identification code (BIK): 9 digits.
pub fn validate_bik(text: &str) -> Result<String, String> {
    let bik = text.trim();
    match digits_of(bik) {
        Some(d) if d.len() == 9 => Ok(bik.to_owned()),
        _ => Err(format!("malformed BIK '{text}': expected 9 digits")),
    }
}

/// Checks a 20-digit settlement account against the BIK of its bank (the key of the Bank of
/// Russia: the last three BIK digits and the account, weighted 7-1-3, sum to a multiple of 10).
pub fn validate_bank_account(account: &str, bik: &str) -> Result<String, String> {
    let acc = account.trim();
    let d = digits_of(acc)
        .filter(|d| d.len() == 20)
        .ok_or_else(|| format!("malformed bank account '{account}': expected 20 digits"))?;
    let b = digits_of(bik.trim())
        .filter(|b| b.len() == 9)
        .ok_or_else(|| format!("malformed BIK '{bik}': expected 9 digits"))?;
    let key: Vec<u32> = b[6..].iter().chain(d.iter()).copied().collect();
    let sum: u32 = key
        .iter()
        .enumerate()
        .map(|(i, digit)| digit * [7, 1, 3][i % 3])
        .sum();
    if sum.is_multiple_of(10) {
        Ok(acc.to_owned())
    } else {
        Err(format!(
            "invalid bank account '{account}': check digit does not match BIK {bik}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn russian_phones_written_differently_are_the_same_number() {
        for written in [
            "8 (912) 345-67-89",
            "+7 912 345 67 89",
            "79123456789",
            "9123456789",
            "8-912-345-67-89",
        ] {
            assert_eq!(
                normalize_phone(written).unwrap(),
                "+79123456789",
                "{written}"
            );
        }
        assert_eq!(
            normalize_phone("+44 20 7946 0958").unwrap(),
            "+442079460958"
        );
    }

    #[test]
    fn malformed_phones_are_rejected_with_the_reason() {
        assert_eq!(
            normalize_phone("12ab").unwrap_err(),
            "malformed phone '12ab': not a phone number"
        );
        assert!(
            normalize_phone("123")
                .unwrap_err()
                .starts_with("malformed phone '123': ")
        );
        assert!(normalize_phone("1+2345678").is_err());
        assert!(normalize_phone("").is_err());
        // Eleven digits, but no such Russian number.
        assert_eq!(
            normalize_phone("+7 012 345-67-89").unwrap_err(),
            "malformed phone '+7 012 345-67-89': not a valid number of country code +7"
        );
    }

    #[test]
    fn extensions_are_kept_as_their_own_part() {
        for written in [
            "+7 (937) 892-20-84 доб. 12",
            "+7 (937) 892-20-84, доб 12",
            "8 937 892 20 84 Доб. 12",
            "+7 937 892-20-84 добавочный 12",
            "+7 (937) 892-20-84 ext. 12",
            "+7 937 892 20 84 x12",
            "tel:+7-937-892-20-84;ext=12",
        ] {
            let p = parse_phone(written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(p.number, "+79378922084", "{written}");
            assert_eq!(p.extension.as_deref(), Some("12"), "{written}");
            assert_eq!(normalize_phone(written).unwrap(), "+79378922084;ext=12");
            assert_eq!(phone_key(&p.stored()), "+79378922084");
        }
        assert_eq!(parse_phone("+7 937 892-20-84").unwrap().extension, None);
        assert_eq!(phone_key("+79378922084"), "+79378922084");
    }

    #[test]
    fn phones_stored_before_libphonenumber_keep_their_normal_form() {
        // Every format the hand-written normaliser took gives the same stored value.
        for (written, stored) in [
            ("8 (912) 345-67-89", "+79123456789"),
            ("+7 912 000-00-00", "+79120000000"),
            ("8 912 000 00 02", "+79120000002"),
            ("+7 (912) 345 67 89", "+79123456789"),
            ("8-912-345-67-89", "+79123456789"),
            ("+7 495 123-45-67", "+74951234567"),
            ("8 (913) 000 11 22", "+79130001122"),
            ("9161234567", "+79161234567"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+49 30 901820", "+4930901820"),
            ("+1 (212) 555-0123", "+12125550123"),
            ("+7\u{a0}912\u{a0}345\u{a0}67\u{a0}89", "+79123456789"),
        ] {
            assert_eq!(normalize_phone(written).as_deref(), Ok(stored), "{written}");
            assert_eq!(
                normalize_phone(stored).as_deref(),
                Ok(stored),
                "{stored} is stable"
            );
        }
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            normalize_email(" Ivan@Example.RU ").unwrap(),
            "ivan@example.ru"
        );
        for bad in [
            "ivan",
            "ivan@",
            "@x.ru",
            "ivan@ru",
            "iv an@x.ru",
            "a@b@c.ru",
            "a@x..ru",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_is_integer_minor_units() {
        assert_eq!(parse_money("1250.5"), Some(125050));
        assert_eq!(parse_money("1 250,50"), Some(125050));
        assert_eq!(parse_money("-3.10"), Some(-310));
        assert_eq!(parse_money("7"), Some(700));
        assert_eq!(parse_money("1.234"), None);
        assert_eq!(parse_money("abc"), None);
        assert_eq!(format_money(125050), "1250.50");
        assert_eq!(format_money(-5), "-0.05");
        assert_eq!(
            normalize_value(FieldType::Money, &[], &json!(12)),
            Ok(json!(1200))
        );
    }

    #[test]
    fn values_are_checked_against_their_type() {
        let opts = vec!["granite".to_owned(), "quartz".to_owned()];
        assert_eq!(
            normalize_value(FieldType::Enum, &opts, &json!("quartz")),
            Ok(json!("quartz"))
        );
        assert!(
            normalize_value(FieldType::Enum, &opts, &json!("wood"))
                .unwrap_err()
                .contains("granite, quartz")
        );
        assert_eq!(
            normalize_value(FieldType::Number, &[], &json!("2.5")),
            Ok(json!(2.5))
        );
        assert_eq!(
            normalize_value(FieldType::Number, &[], &json!("3")),
            Ok(json!(3))
        );
        assert!(normalize_value(FieldType::Number, &[], &json!("three")).is_err());
        assert_eq!(
            normalize_value(FieldType::Bool, &[], &json!("да")),
            Ok(json!(true))
        );
        assert!(normalize_value(FieldType::Date, &[], &json!("2026-02-30")).is_err());
        assert_eq!(
            normalize_value(FieldType::Date, &[], &json!("1950-06-01")),
            Ok(json!("1950-06-01"))
        );
        for far in ["+12345-01-01", "0999-12-31", "-0001-01-01"] {
            assert!(
                normalize_value(FieldType::Date, &[], &json!(far)).is_err(),
                "{far}"
            );
        }
        assert!(normalize_value(FieldType::String, &[], &json!(5)).is_err());
    }

    #[test]
    fn inn_check_digits_are_verified() {
        assert_eq!(validate_inn("7707083893").unwrap(), "7707083893");
        assert!(
            validate_inn("7707083894")
                .unwrap_err()
                .contains("check digit")
        );
        assert_eq!(validate_inn("500100732259").unwrap(), "500100732259");
        assert!(validate_inn("500100732258").is_err());
        assert!(
            validate_inn("12345")
                .unwrap_err()
                .contains("10 or 12 digits")
        );
        assert!(
            validate_inn("77070838x3")
                .unwrap_err()
                .contains("digits only")
        );
    }

    #[test]
    fn bank_account_is_checked_against_the_bik() {
        let bik = "044525225";
        // Sberbank's correspondent account is keyed differently; build a settlement account whose
        // check digit (position 9) makes the weighted sum a multiple of ten.
        let base = "40702810X38000012345";
        let valid = (0..10)
            .map(|d| base.replace('X', &d.to_string()))
            .find(|acc| validate_bank_account(acc, bik).is_ok())
            .expect("one digit fits");
        let wrong_digit = if valid.as_bytes()[8] == b'0' {
            '1'
        } else {
            '0'
        };
        let mut broken = valid.clone();
        broken.replace_range(8..9, &wrong_digit.to_string());
        assert!(
            validate_bank_account(&broken, bik)
                .unwrap_err()
                .contains("check digit")
        );
        assert!(
            validate_bank_account("123", bik)
                .unwrap_err()
                .contains("20 digits")
        );
        assert!(validate_bik("04452522").is_err());
    }
}
