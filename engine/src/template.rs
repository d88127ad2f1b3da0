//! Message templates for robots (`notify`, `create_task`, `record_incident`): text with
//! `{lead.title}`-style placeholders over the same variables as conditions. `{{` and `}}` are
//! literal braces; `{lead.fields.budget|money}` formats minor units as `1250.50`.

use serde_json::{Map, Value};

/// A piece of a template: literal text (a `{{` or `}}` as its one brace), or a placeholder's
/// path and filter.
enum Piece<'a> {
    Text(&'a str),
    Placeholder {
        inner: &'a str,
        path: &'a str,
        filter: Option<&'a str>,
    },
}

/// The pieces of a template, in order; an unmatched `}` or an unclosed `{` ends it with an
/// error naming the character.
fn pieces(template: &str) -> impl Iterator<Item = Result<Piece<'_>, String>> {
    let mut rest = template;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || rest.is_empty() {
            return None;
        }
        let Some(i) = rest.find(['{', '}']) else {
            return Some(Ok(Piece::Text(std::mem::take(&mut rest))));
        };
        if i > 0 {
            let (text, tail) = rest.split_at(i);
            rest = tail;
            return Some(Ok(Piece::Text(text)));
        }
        let at = template.len() - rest.len() + 1;
        if rest.starts_with("{{") || rest.starts_with("}}") {
            let brace = &rest[..1];
            rest = &rest[2..];
            return Some(Ok(Piece::Text(brace)));
        }
        if rest.starts_with('}') {
            failed = true;
            return Some(Err(format!("unmatched '}}' in template at character {at}")));
        }
        let Some(end) = rest.find('}') else {
            failed = true;
            return Some(Err(format!("unclosed '{{' in template at character {at}")));
        };
        let inner = rest[1..end].trim();
        rest = &rest[end + 1..];
        let (path, filter) = match inner.split_once('|') {
            Some((p, f)) => (p.trim(), Some(f.trim())),
            None => (inner, None),
        };
        Some(Ok(Piece::Placeholder {
            inner,
            path,
            filter,
        }))
    })
}

/// Fills in a template. An unknown placeholder is an error naming it.
pub fn render(template: &str, vars: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template) {
        match piece? {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder {
                inner,
                path,
                filter,
            } => {
                let value = lookup(vars, path)
                    .ok_or_else(|| format!("unknown placeholder '{{{inner}}}'"))?;
                out.push_str(&format_value(value, filter)?);
            }
        }
    }
    Ok(out)
}

/// The paths of a template's placeholders (`lead.title` of `{lead.title|upper}`), as far as
/// it parses.
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    pieces(template)
        .map_while(Result::ok)
        .filter_map(|p| match p {
            Piece::Placeholder { path, .. } => Some(path),
            Piece::Text(_) => None,
        })
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
