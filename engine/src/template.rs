//! Message templates for robots (`notify`, `create_task`, `record_incident`): text with
//! `{lead.title}`-style placeholders over the same variables as conditions. `{{` and `}}` are
//! literal braces; `{lead.fields.budget|money}` formats minor units as `1250.50`.

use serde_json::{Map, Value};

/// Fills in a template. An unknown placeholder is an error naming it.
pub fn render(template: &str, vars: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "unmatched '}}' in template at character {}",
                template.len() - tail.len() + 1
            ));
        }
        let end = tail.find('}').ok_or_else(|| {
            format!(
                "unclosed '{{' in template at character {}",
                template.len() - tail.len() + 1
            )
        })?;
        let inner = tail[1..end].trim();
        let (path, filter) = match inner.split_once('|') {
            Some((p, f)) => (p.trim(), Some(f.trim())),
            None => (inner, None),
        };
        let value =
            lookup(vars, path).ok_or_else(|| format!("unknown placeholder '{{{inner}}}'"))?;
        out.push_str(&format_value(value, filter)?);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(vars: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = vars.get(parts.next()?)?;
    for p in parts {
        v = match v {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn format_value(v: &Value, filter: Option<&str>) -> Result<String, String> {
    match filter {
        None => Ok(match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| format_value(i, None))
                .collect::<Result<Vec<_>, _>>()?
                .join(", "),
            other => other.to_string(),
        }),
        Some("money") => match v {
            Value::Number(n) => Ok(crate::field::format_money(n.as_i64().unwrap_or_default())),
            Value::Null => Ok(String::new()),
            other => Err(format!("'money' formats amounts, not {other}")),
        },
        Some("upper") => format_value(v, None).map(|s| s.to_uppercase()),
        Some(other) => Err(format!(
            "unknown template filter '{other}': use money or upper"
        )),
    }
}

/// The paths of a template's placeholders (`lead.title` of `{lead.title|upper}`), as far as
/// it parses.
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    let mut rest = template;
    std::iter::from_fn(move || {
        loop {
            let i = rest.find(['{', '}'])?;
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return None;
            }
            let end = tail.find('}')?;
            let inner = &tail[1..end];
            rest = &tail[end + 1..];
            return Some(inner.split_once('|').map_or(inner, |(p, _)| p).trim());
        }
    })
}

/// Checks a template against a sample of the variables it will see.
pub fn check(template: &str, vars: &Map<String, Value>) -> Result<(), String> {
    render(template, vars).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Map<String, Value> {
        let Value::Object(m) = json!({"lead": {"id": 42, "title": "Kitchen", "phones": ["+7912", "+7913"], "fields": {"budget": 12000050}}})
        else {
            unreachable!()
        };
        m
    }

    #[test]
    fn placeholders_are_listed_by_path() {
        let paths: Vec<&str> =
            placeholders("{{x}} {lead.title | upper} at {responsible.name}{lead.id}").collect();
        assert_eq!(paths, ["lead.title", "responsible.name", "lead.id"]);
        assert_eq!(placeholders("none {{here}}").count(), 0);
        assert_eq!(placeholders("cut {lead.title").count(), 0);
    }

    #[test]
    fn placeholders_are_filled_in() {
        assert_eq!(
            render(
                "Call {lead.title} (lead-{lead.id}) at {lead.phones}",
                &vars()
            )
            .unwrap(),
            "Call Kitchen (lead-42) at +7912, +7913"
        );
        assert_eq!(
            render("Budget {lead.fields.budget|money} {{RUB}}", &vars()).unwrap(),
            "Budget 120000.50 {RUB}"
        );
        assert_eq!(
            render("first phone {lead.phones.0}", &vars()).unwrap(),
            "first phone +7912"
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            render("{lead.titel}", &vars()).unwrap_err(),
            "unknown placeholder '{lead.titel}'"
        );
        assert!(
            render("{lead.title", &vars())
                .unwrap_err()
                .contains("unclosed '{'")
        );
        assert!(
            render("a } b", &vars())
                .unwrap_err()
                .contains("unmatched '}'")
        );
        assert!(
            render("{lead.title|shout}", &vars())
                .unwrap_err()
                .contains("unknown template filter 'shout'")
        );
    }
}
