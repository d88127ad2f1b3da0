//! A call's parameters: the query string, a form body or a JSON body, read the way Bitrix24
//! (PHP) reads them, merged into one JSON object whose top-level keys are lowercase.
//!
//! PHP-style keys nest: `fields[PHONE][0][VALUE]=…` is `{"fields": {"PHONE": [{"VALUE": …}]}}`,
//! `select[]=ID` appends. Keys and values are decoded like PHP's `urldecode` (`+` is a space,
//! `%XX` a byte), so a client that does not escape its values gets what Bitrix24 would store:
//! `TITLE=R&D+lead` is `TITLE=R` and a key `D lead` (BITRIX24.md §2). All values of a query
//! or form are strings; a map keyed `0..n-1` in order is a JSON array, as PHP's `json_encode`
//! writes it.
//!
//! Bad input is an [`Error::InvalidRequest`], never a panic: invalid UTF-8, malformed JSON,
//! nesting deeper than [`MAX_DEPTH`], more than [`MAX_PAIRS`] parameters.

use super::error::Error;
use serde_json::{Map, Value};

/// The deepest nesting accepted (PHP's default `max_input_nesting_level` is 64).
pub const MAX_DEPTH: usize = 32;
/// The most `key=value` pairs accepted in one query or form body.
pub const MAX_PAIRS: usize = 10_000;

/// The parameters of one call: a JSON object, top-level keys lowercase; and the labels of a
/// `batch`'s `cmd` in the order the client sent them (a JSON object's keys are kept sorted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Map<String, Value>, Vec<String>);

impl Params {
    /// Reads the query string (without `?`), then the body by its content type, and merges
    /// them; the body's keys win over the query's.
    pub fn from_request(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Params, Error> {
        let mut out = match query {
            Some(q) => parse_query(q)?,
            None => Params::default(),
        };
        let body = parse_body(content_type, body)?;
        if body.0.contains_key("cmd") {
            out.1 = body.1;
        }
        for (k, v) in body.0 {
            out.0.insert(k, v);
        }
        Ok(out)
    }

    /// Parameters from a JSON object (a batch command's, or a test's); other JSON is no
    /// parameters at all.
    pub fn from_value(v: Value) -> Params {
        let mut out = Map::new();
        if let Value::Object(m) = v {
            for (k, v) in m {
                out.insert(k.to_lowercase(), v);
            }
        }
        Params(out, Vec::new())
    }

    /// The parameter `key` (give it in lowercase), whatever case the client used.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The parameter `key` unless it is missing, null or an empty string.
    pub fn given(&self, key: &str) -> Option<&Value> {
        self.get(key)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
    }

    /// Sets a parameter (the key is lowercased).
    pub fn insert(&mut self, key: &str, v: Value) {
        self.0.insert(key.to_lowercase(), v);
    }

    /// The labels of `cmd` in the order sent (empty when `cmd` is not an object).
    pub fn cmd_order(&self) -> &[String] {
        &self.1
    }

    /// The parameters as one JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// A query string or form body in PHP's `parse_str` way.
pub fn parse_query(q: &str) -> Result<Params, Error> {
    let mut root = Node::Map(Vec::new());
    let mut pairs = 0;
    for piece in q.split('&').filter(|p| !p.is_empty()) {
        pairs += 1;
        if pairs > MAX_PAIRS {
            return Err(Error::InvalidRequest(format!(
                "too many parameters: at most {MAX_PAIRS}"
            )));
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let key = urldecode(k)?;
        let value = urldecode(v)?;
        let path = key_path(&key)?;
        if let Some(path) = path {
            root.set(&path, value);
        }
    }
    let order = match &root {
        Node::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("cmd"))
            .map(|(_, cmd)| match cmd {
                Node::Map(labels) => labels.iter().map(|(l, _)| l.clone()).collect(),
                Node::Leaf(_) => Vec::new(),
            })
            .unwrap_or_default(),
        Node::Leaf(_) => Vec::new(),
    };
    // The root is an object even when every key is a number (`0=x`, which PHP makes a
    // list): parameters are named.
    let map = match root {
        Node::Map(entries) => entries
            .into_iter()
            .map(|(k, n)| (k, n.into_value()))
            .collect(),
        Node::Leaf(_) => serde_json::Map::new(),
    };
    let mut params = Params::from_value(Value::Object(map));
    params.1 = order;
    Ok(params)
}

/// A body by its content type: JSON, form-encoded, or (no or another type) whichever it looks
/// like. An empty body is no parameters.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Params, Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Ok(Params::default());
    };
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let json = match media.as_str() {
        "application/json" => true,
        m if m.ends_with("+json") => true,
        "application/x-www-form-urlencoded" => false,
        "multipart/form-data" => {
            return Err(Error::InvalidRequest(
                "multipart bodies are not read here: send JSON or a form-encoded body".into(),
            ));
        }
        _ => matches!(first, b'{' | b'['),
    };
    if json {
        parse_json(body)
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::InvalidRequest("the body is not valid UTF-8".into()))?;
        parse_query(text)
    }
}

/// A JSON body: an object (an empty array counts as no parameters, as PHP reads `[]`).
pub fn parse_json(body: &[u8]) -> Result<Params, Error> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::InvalidRequest(format!(
            "the body is not valid JSON ({e}): send an object like {{\"fields\": {{…}}}}"
        ))
    })?;
    if depth(&v) > MAX_DEPTH + 1 {
        return Err(too_deep());
    }
    match v {
        Value::Object(_) => {
            let mut params = Params::from_value(v);
            // The document parsed, so reading its `cmd` keys in order cannot fail.
            params.1 = serde_json::from_slice::<CmdOrder>(body)
                .map(|o| o.0)
                .unwrap_or_default();
            Ok(params)
        }
        Value::Array(a) if a.is_empty() => Ok(Params::default()),
        _ => Err(Error::InvalidRequest(
            "the JSON body must be an object like {\"fields\": {…}}".into(),
        )),
    }
}

/// The keys of a JSON body's `cmd` object (any case), in document order.
struct CmdOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for CmdOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CmdOrder, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct Top;
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(keys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<String>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Vec::new())
            }
            fn visit_str<E>(self, _: &str) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
            fn visit_unit<E>(self) -> Result<Vec<String>, E> {
                Ok(Vec::new())
            }
        }
        struct KeysOf;
        impl<'de> serde::de::DeserializeSeed<'de> for KeysOf {
            type Value = Vec<String>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Vec<String>, D::Error> {
                d.deserialize_any(Keys)
            }
        }
        impl<'de> Visitor<'de> for Top {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
                let mut order = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if k.eq_ignore_ascii_case("cmd") {
                        order = map.next_value_seed(KeysOf)?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(order)
            }
        }
        d.deserialize_map(Top).map(CmdOrder)
    }
}

fn too_deep() -> Error {
    Error::InvalidRequest(format!(
        "parameters are nested deeper than {MAX_DEPTH} levels"
    ))
}

/// How deep a JSON value nests (a scalar is 1).
pub(crate) fn depth(v: &Value) -> usize {
    // Iterative, so a hostile value cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte (a `%` without two hex digits stays), and
/// the result must be UTF-8.
pub fn urldecode(s: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && hex(bytes[i + 1]).is_some()
                && hex(bytes[i + 2]).is_some() =>
            {
                out.push(hex(bytes[i + 1]).unwrap_or(0) * 16 + hex(bytes[i + 2]).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        Error::InvalidRequest(
            "a parameter is not valid UTF-8 once decoded: percent-encode UTF-8 text".into(),
        )
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One step of a key's path: a name, or `[]` (append).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Push,
}

/// `fields[PHONE][0][VALUE]` → `fields`, `PHONE`, `0`, `VALUE`, as PHP splits it: leading
/// spaces dropped, spaces and dots in the top-level name become `_`, an unclosed `[` is part of
/// the name (as `_`), and anything after the last `]` that does not open another `[` is
/// ignored. `None` for an empty name (PHP drops it).
fn key_path(key: &str) -> Result<Option<Vec<Step>>, Error> {
    let key = key.trim_start_matches(' ');
    let (name, mut rest) = match key.find('[') {
        Some(i) if key[i..].contains(']') => (&key[..i], &key[i..]),
        _ => (key, ""),
    };
    let name: String = name
        .chars()
        .map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c })
        .collect();
    if name.is_empty() {
        return Ok(None);
    }
    let mut path = vec![Step::Key(name)];
    while let Some(body) = rest.strip_prefix('[') {
        let Some(end) = body.find(']') else { break };
        let idx = &body[..end];
        path.push(if idx.is_empty() {
            Step::Push
        } else {
            Step::Key(idx.to_owned())
        });
        if path.len() > MAX_DEPTH {
            return Err(too_deep());
        }
        rest = &body[end + 1..];
    }
    Ok(Some(path))
}

/// The tree a query builds, in the order keys first appear.
enum Node {
    Leaf(String),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn set(&mut self, path: &[Step], value: String) {
        let Some((step, rest)) = path.split_first() else {
            *self = Node::Leaf(value);
            return;
        };
        if !matches!(self, Node::Map(_)) {
            *self = Node::Map(Vec::new());
        }
        let Node::Map(entries) = self else { return };
        let key = match step {
            Step::Key(k) => k.clone(),
            Step::Push => {
                let next = entries
                    .iter()
                    .filter_map(|(k, _)| k.parse::<u64>().ok())
                    .max()
                    .map_or(0, |m| m.saturating_add(1));
                next.to_string()
            }
        };
        let i = match entries.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                entries.push((key, Node::Map(Vec::new())));
                entries.len() - 1
            }
        };
        if rest.is_empty() {
            entries[i].1 = Node::Leaf(value);
        } else {
            entries[i].1.set(rest, value);
        }
    }

    fn into_value(self) -> Value {
        match self {
            Node::Leaf(s) => Value::String(s),
            Node::Map(entries) => {
                let is_list = !entries.is_empty()
                    && entries
                        .iter()
                        .enumerate()
                        .all(|(i, (k, _))| *k == i.to_string());
                if is_list {
                    Value::Array(entries.into_iter().map(|(_, n)| n.into_value()).collect())
                } else {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, n)| (k, n.into_value()))
                            .collect(),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Value {
        Value::Object(parse_query(s).unwrap().0)
    }

    /// Found by the facade's fuzz test: a body of numeric keys alone made the root a list,
    /// which the parser took for impossible (a panic, a 500).
    #[test]
    fn numeric_keys_at_the_root_stay_named_parameters() {
        assert_eq!(q("0"), json!({"0": ""}));
        assert_eq!(q("0=a&1=b"), json!({"0": "a", "1": "b"}));
        assert_eq!(q("0[]=a"), json!({"0": ["a"]}));
    }

    #[test]
    fn php_style_keys_nest_and_number_into_lists() {
        assert_eq!(
            q(
                "fields[TITLE]=A&fields[PHONE][0][VALUE]=%2B7900&fields[PHONE][0][VALUE_TYPE]=WORK&select[0]=ID&select[1]=TITLE"
            ),
            json!({"fields": {"TITLE": "A", "PHONE": [{"VALUE": "+7900", "VALUE_TYPE": "WORK"}]}, "select": ["ID", "TITLE"]})
        );
        assert_eq!(
            q("select[]=ID&select[]=NAME"),
            json!({"select": ["ID", "NAME"]})
        );
        assert_eq!(
            q("filter[%25TITLE]=x&filter[>ID]=5"),
            json!({"filter": {"%TITLE": "x", ">ID": "5"}})
        );
    }

    #[test]
    fn unescaped_values_decode_as_bitrix24_reads_them() {
        // bitrix24-rest's captured request (BITRIX24.md §2).
        let p = q(
            "fields%5BTITLE%5D=R&D+lead+%231&fields%5BNAME%5D=Ivan&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=+7+999+000-00-01&fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK&fields%5BOPENED%5D=True&start=0&",
        );
        assert_eq!(p["fields"]["TITLE"], "R");
        assert_eq!(p["fields"]["PHONE"][0]["VALUE"], " 7 999 000-00-01");
        assert_eq!(p["fields"]["OPENED"], "True");
        assert_eq!(p["d_lead_#1"], "");
        assert_eq!(p["start"], "0");
    }

    #[test]
    fn top_level_keys_are_lowercase_and_the_body_wins() {
        let p = Params::from_request(
            Some("ID=3&start=0"),
            Some("application/json; charset=utf-8"),
            br#"{"Id": 4, "FIELDS": {"TITLE": "x"}}"#,
        )
        .unwrap();
        assert_eq!(p.get("id"), Some(&json!(4)));
        assert_eq!(p.get("fields"), Some(&json!({"TITLE": "x"})));
        assert_eq!(p.get("start"), Some(&json!("0")));
    }

    #[test]
    fn form_bodies_and_sniffed_bodies_are_read() {
        let form =
            Params::from_request(None, Some("application/x-www-form-urlencoded"), b"id=5").unwrap();
        assert_eq!(form.get("id"), Some(&json!("5")));
        let sniffed = Params::from_request(None, Some("text/plain"), b" {\"id\": 6}").unwrap();
        assert_eq!(sniffed.get("id"), Some(&json!(6)));
        let empty = Params::from_request(None, Some("application/json"), b"  ").unwrap();
        assert_eq!(empty, Params::default());
    }

    #[test]
    fn bad_input_is_an_error_that_says_what_is_wrong() {
        let e = |ct: &str, b: &[u8]| {
            Params::from_request(None, Some(ct), b)
                .unwrap_err()
                .to_string()
        };
        assert!(e("application/json", b"{\"a\":").contains("not valid JSON"));
        assert!(e("application/json", b"42").contains("must be an object"));
        assert!(e("application/x-www-form-urlencoded", b"a=\xff").contains("UTF-8"));
        assert!(
            parse_query("a=%FF%FE")
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        let deep = format!("a{}=1", "[x]".repeat(40));
        assert!(
            parse_query(&deep)
                .unwrap_err()
                .to_string()
                .contains("deeper")
        );
        let deep_json = format!("{{\"a\":{}1{}}}", "[".repeat(60), "]".repeat(60));
        assert!(e("application/json", deep_json.as_bytes()).contains("deeper"));
    }

    #[test]
    fn odd_keys_are_read_as_php_reads_them() {
        assert_eq!(q("a[b=1"), json!({"a_b": "1"}));
        assert_eq!(q("=1&[x]=2&a.b=3"), json!({"a_b": "3"}));
        assert_eq!(q("a[x]junk[y]=1"), json!({"a": {"x": "1"}}));
        assert_eq!(q("a=1&a[x]=2"), json!({"a": {"x": "2"}}));
        assert_eq!(q("a%=1&b=%2"), json!({"a%": "1", "b": "%2"}));
    }
}
