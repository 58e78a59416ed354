//! Comparing what a stream sent with what a test expected, shared by the
//! scenario runner and the stream tests: JSON patterns (`"$any"`,
//! `"$timestamp"`, `"$name"` for a saved value), and `assert_events!`,
//! which on a mismatch prints expected and received frames side by side
//! (id, type and the full `data` of each) and marks the first row that
//! differs.

use std::collections::HashMap;

use serde_json::Value;

use crate::sse_client::Message;

/// Values a pattern may name as `"$name"`: the scenario runner's saved ids
/// and users' ids. Stream tests pass [`no_vars`].
pub type Vars = HashMap<String, Value>;

pub fn no_vars() -> Vars {
    Vars::new()
}

/// One message as a row of the table: its `id:` (`None` for none), its
/// `type` and its `data`. Expected rows hold a pattern in `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub kind: String,
    pub data: Value,
}

/// An expected frame; `id` is `None` for a message without one, and `data`
/// a pattern (see [`matches`]): `any()` accepts whatever data came.
pub fn frame(id: impl Into<Option<i64>>, kind: &str, data: Value) -> Frame {
    Frame {
        id: id.into().map(|id| id.to_string()),
        kind: kind.to_string(),
        data,
    }
}

/// The pattern that matches any value.
pub fn any() -> Value {
    Value::String("$any".into())
}

impl Frame {
    /// A received message; data that is not JSON is kept as a string.
    pub fn received(message: &Message) -> Frame {
        let json: Value =
            serde_json::from_str(&message.data).unwrap_or(Value::String(message.data.clone()));
        Frame {
            id: message.id.clone(),
            kind: json["type"].as_str().unwrap_or("?").to_string(),
            data: json.get("data").cloned().unwrap_or(json),
        }
    }

    fn cell(&self) -> String {
        format!(
            "{} {} {}",
            self.id.as_deref().unwrap_or("-"),
            self.kind,
            self.data
        )
    }
}

/// Compares JSON: objects key for key (the same keys, no more, no fewer),
/// arrays item for item, `"$any"` matches anything, `"$timestamp"` an
/// RFC 3339 time, `"$name"` the saved value `name`; anything else must be
/// equal. `at` names the place for the message.
pub fn matches(expected: &Value, got: &Value, at: &str, vars: &Vars) -> Result<(), String> {
    match expected {
        Value::String(s) if s == "$any" => Ok(()),
        Value::String(s) if s == "$timestamp" => {
            match got.as_str().map(chrono::DateTime::parse_from_rfc3339) {
                Some(Ok(_)) => Ok(()),
                _ => Err(format!("{at}: expected a timestamp, got {got}")),
            }
        }
        Value::String(s) if s.starts_with('$') => {
            let value = vars
                .get(&s[1..])
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}: no saved value {:?}", &s[1..]))?;
            if got.as_str() == Some(value) {
                Ok(())
            } else {
                Err(format!("{at}: expected {s} ({value}), got {got}"))
            }
        }
        Value::Object(want) => {
            let have = got
                .as_object()
                .ok_or_else(|| format!("{at}: expected an object, got {got}"))?;
            let mut want_keys: Vec<_> = want.keys().collect();
            let mut have_keys: Vec<_> = have.keys().collect();
            want_keys.sort();
            have_keys.sort();
            if want_keys != have_keys {
                return Err(format!(
                    "{at}: expected keys {want_keys:?}, got {have_keys:?} in {got}"
                ));
            }
            for (key, value) in want {
                matches(value, &have[key], &format!("{at}.{key}"), vars)?;
            }
            Ok(())
        }
        Value::Array(want) => {
            let have = got
                .as_array()
                .ok_or_else(|| format!("{at}: expected an array, got {got}"))?;
            if want.len() != have.len() {
                return Err(format!("{at}: expected {} items, got {got}", want.len()));
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                matches(w, h, &format!("{at}[{i}]"), vars)?;
            }
            Ok(())
        }
        _ if expected == got => Ok(()),
        _ => Err(format!("{at}: expected {expected}, got {got}")),
    }
}

/// Why row `expected` does not match row `received`, if it does not.
fn row_difference(
    expected: Option<&Frame>,
    received: Option<&Frame>,
    vars: &Vars,
) -> Option<String> {
    match (expected, received) {
        (Some(_), None) => Some("expected, not received".into()),
        (None, Some(_)) => Some("received, not expected".into()),
        (None, None) => None,
        (Some(want), Some(got)) => {
            if want.id != got.id {
                Some(format!("id: expected {:?}, got {:?}", want.id, got.id))
            } else if want.kind != got.kind {
                Some(format!("type: expected {}, got {}", want.kind, got.kind))
            } else {
                matches(&want.data, &got.data, "data", vars).err()
            }
        }
    }
}

/// Rows shown around the first difference when there are many.
const ROWS_BEFORE: usize = 3;
const ROWS_AFTER: usize = 6;

/// `Ok` if `received` matches `expected` row for row, with nothing missing
/// and nothing extra; otherwise the side-by-side table.
pub fn compare_events(received: &[Message], expected: &[Frame], vars: &Vars) -> Result<(), String> {
    let received: Vec<Frame> = received.iter().map(Frame::received).collect();
    let rows = expected.len().max(received.len());
    let differences: Vec<Option<String>> = (0..rows)
        .map(|i| row_difference(expected.get(i), received.get(i), vars))
        .collect();
    let Some(first) = differences.iter().position(Option::is_some) else {
        return Ok(());
    };
    let shown = first.saturating_sub(ROWS_BEFORE)..rows.min(first + ROWS_AFTER + 1);
    let cell = |frame: Option<&Frame>| frame.map_or("(none)".to_string(), Frame::cell);
    let width = shown
        .clone()
        .map(|i| cell(expected.get(i)).chars().count())
        .chain(["expected".len()])
        .max()
        .unwrap_or(0);
    let mut table = format!(
        "events differ at row {} of {rows} (expected {}, received {}):\n",
        first + 1,
        expected.len(),
        received.len()
    );
    let number_width = rows.to_string().len();
    table.push_str(&format!(
        "   {:>number_width$}  {:<width$} | received\n",
        "#", "expected"
    ));
    if shown.start > 0 {
        table.push_str(&format!("   … {} rows before\n", shown.start));
    }
    for i in shown.clone() {
        let mark = match &differences[i] {
            _ if i == first => "=>",
            Some(_) => " !",
            None => "  ",
        };
        table.push_str(&format!(
            "{mark} {:>number_width$}  {:<width$} | {}\n",
            i + 1,
            cell(expected.get(i)),
            cell(received.get(i)),
        ));
    }
    if shown.end < rows {
        table.push_str(&format!("   … {} rows after\n", rows - shown.end));
    }
    table.push_str(&format!(
        "row {}: {}",
        first + 1,
        differences[first].as_deref().unwrap_or_default()
    ));
    Err(table)
}

/// Fails the test unless the received messages match the expected frames
/// exactly (see [`compare_events`]), printing both side by side. An
/// optional format string and arguments say whose stream it was.
macro_rules! assert_events {
    ($received:expr, $expected:expr $(,)?) => {
        if let Err(table) = $crate::expect::compare_events(
            &$received,
            &$expected,
            &$crate::expect::no_vars(),
        ) {
            panic!("{table}");
        }
    };
    ($received:expr, $expected:expr, $($context:tt)+) => {
        if let Err(table) = $crate::expect::compare_events(
            &$received,
            &$expected,
            &$crate::expect::no_vars(),
        ) {
            panic!("{}: {table}", format!($($context)+));
        }
    };
}
pub(crate) use assert_events;

#[test]
fn a_mismatch_prints_both_sides_and_marks_the_first_difference() {
    let message = |id: &str, data: &str| Message {
        id: Some(id.to_string()),
        data: data.to_string(),
    };
    let received = [
        message("1", r#"{"type":"new_thread","data":{"id":"a"}}"#),
        message("2", r#"{"type":"thread_liked","data":{"likeCount":2}}"#),
    ];
    let expected = [
        frame(1, "new_thread", any()),
        frame(2, "thread_liked", serde_json::json!({"likeCount": 1})),
        frame(None, "resync", any()),
    ];
    let table = compare_events(&received, &expected, &no_vars()).unwrap_err();
    assert!(table.contains("events differ at row 2 of 3"), "{table}");
    assert!(
        table.contains(r#"=> 2  2 thread_liked {"likeCount":1} | 2 thread_liked {"likeCount":2}"#),
        "{table}"
    );
    assert!(table.contains(" ! 3  - resync \"$any\""), "{table}");
    assert!(table.contains("| (none)"), "{table}");
    assert!(
        table.ends_with("data.likeCount: expected 1, got 2"),
        "{table}"
    );
    assert!(compare_events(&received, &expected[..2], &no_vars()).is_err());
    let right = [
        frame(1, "new_thread", any()),
        frame(2, "thread_liked", any()),
    ];
    assert!(compare_events(&received, &right, &no_vars()).is_ok());
}
