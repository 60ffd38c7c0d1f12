//! Structural mutations of JSON documents. Byte mutations of a JSON file are mostly syntax
//! errors (~1 % of them parse), so the type checks and validation behind the syntax are rarely
//! reached; these keep the document well-formed and change one to three values: a number, string
//! or container replaced by an extreme or wrongly typed value, a key dropped, an unknown key added.
use crate::mutate::Mutator;
use crate::rng::Rng;
use serde_json::{json, Value};

/// Values swapped in: boundaries, wrong types, huge and deeply nested ones.
fn extreme(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(1e308),
        5 => json!(-0.0),
        6 => json!(1_000_000_000_000u64),
        7 => json!(""),
        8 => Value::String("é\u{0}\u{202e}".repeat(1 + rng.below(200))),
        9 => Value::Null,
        10 => json!(true),
        11 => json!([]),
        12 => json!({}),
        13 => (0..1 + rng.below(120)).fold(json!(1), |v, _| json!([v])),
        14 => json!([1, "a", null, [2.5]]),
        _ => json!(4294967296u64),
    }
}

/// Every value position in `v` (paths of object keys / array indices).
fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Step::Key(k.clone()));
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// One structurally mutated copy of `doc`.
pub fn mutate(doc: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut v = doc.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = vec![];
        paths(&v, &mut vec![], &mut all);
        let path = all[rng.below(all.len())].clone();
        let Some(slot) = at(&mut v, &path) else { continue };
        match (rng.below(4), slot) {
            (0, Value::Object(m)) if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
                m.remove(&k);
            }
            (1, Value::Object(m)) => {
                m.insert("unknown_key".into(), extreme(rng));
            }
            (_, slot) => *slot = extreme(rng),
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A case generator for [`crate::Campaign::run_with`]: half structural mutations of a JSON seed,
/// half byte-level cases of `bytes` (which holds the same seeds).
pub fn cases<'a>(docs: &'a [Value], bytes: &'a Mutator) -> impl Fn(&mut Rng) -> Vec<u8> + 'a {
    move |rng| {
        if rng.chance(1, 2) {
            mutate(&docs[rng.below(docs.len())], rng)
        } else {
            bytes.case(rng)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_json_and_change_the_document() {
        let doc = json!({"a": 1, "b": [1, 2, {"c": "x"}], "d": {"e": null}});
        let mut changed = 0;
        for i in 0..300 {
            let b = mutate(&doc, &mut Rng::for_case(0, "json", i));
            let v: Value = serde_json::from_slice(&b).expect("still JSON");
            changed += usize::from(v != doc);
        }
        assert!(changed > 250, "{changed}");
    }
}
