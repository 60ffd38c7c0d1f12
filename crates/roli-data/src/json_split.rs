//! The reference repo's JSON split files (`train.json`/`val.json`/`test.json`): each a JSON
//! object mapping an image path, relative to the image folder, to a class label, remapped per
//! split to contiguous ids via `sorted(set(labels))` as the reference does. A key given twice is
//! an error: a plain JSON map would keep the last one and silently drop an image.
use crate::error::{DataError, Result};
use crate::folder::ImageListDataset;
use crate::transforms::ImageTransform;
use std::path::Path;

/// A split file's entries in file order.
pub type SplitEntries = Vec<(String, serde_json::Value)>;

/// Parses a split file's text into its entries; not an object, or a duplicate key, is an error.
pub fn parse_split_object(text: &str) -> std::result::Result<SplitEntries, String> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = SplitEntries;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object of image path → label")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<SplitEntries, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                if !seen.insert(k.clone()) {
                    return Err(serde::de::Error::custom(format!("image '{k}' is listed twice")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = serde::Deserializer::deserialize_map(&mut de, Entries).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(entries)
}

/// A remapped JSON split: `(path, class id)` sorted by path, and the class names by id.
pub type RemappedSplit = (Vec<(String, i64)>, Vec<String>);

/// Sorted-unique label remap of a JSON split (pure, tested). Ints sort numerically, strings
/// lexicographically (as Python's `sorted` does); mixing them is an error.
pub fn remap_json_labels(entries: &[(String, serde_json::Value)]) -> std::result::Result<RemappedSplit, String> {
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone)]
    enum Key {
        I(i64),
        S(String),
    }
    let mut keyed = Vec::with_capacity(entries.len());
    for (path, v) in entries {
        let k = match v {
            serde_json::Value::Number(n) if n.is_i64() => Key::I(n.as_i64().unwrap_or_default()),
            serde_json::Value::String(s) => Key::S(s.clone()),
            other => return Err(format!("label of '{path}' is {other}, expected an integer or a string")),
        };
        keyed.push((path.clone(), k));
    }
    let mut uniq: Vec<Key> = keyed.iter().map(|(_, k)| k.clone()).collect();
    uniq.sort();
    uniq.dedup();
    if uniq.iter().any(|k| matches!(k, Key::I(_))) && uniq.iter().any(|k| matches!(k, Key::S(_))) {
        return Err("labels mix integers and strings".into());
    }
    let names = uniq
        .iter()
        .map(|k| match k {
            Key::I(i) => i.to_string(),
            Key::S(s) => s.clone(),
        })
        .collect();
    let mut items: Vec<(String, i64)> = keyed
        .into_iter()
        .map(|(p, k)| {
            let id = uniq.binary_search(&k).unwrap_or(0) as i64;
            (p, id)
        })
        .collect();
    items.sort();
    Ok((items, names))
}

/// Parses and remaps a split file's text (the in-memory half of [`ImageListDataset::json_split`],
/// which the fuzz tests call directly).
pub fn parse_json_split(text: &str) -> std::result::Result<RemappedSplit, String> {
    remap_json_labels(&parse_split_object(text)?)
}

impl ImageListDataset {
    /// A reference-repo JSON split: `json` maps paths relative to `image_dir` to labels (ints or
    /// strings), remapped to 0..K by sorted unique value — per split, as the reference does.
    pub fn json_split(json: &Path, image_dir: &Path, transform: ImageTransform) -> Result<Self> {
        if !json.is_file() {
            return Err(DataError::Split {
                path: json.to_path_buf(),
                detail: "is missing; a JSON-splits folder needs train.json, val.json and test.json".into(),
            });
        }
        let text = std::fs::read_to_string(json).map_err(|e| DataError::io(json, e))?;
        let split = |detail: String| DataError::Split { path: json.to_path_buf(), detail };
        let entries = parse_split_object(&text).map_err(|e| split(format!("{e}; fix the split file")))?;
        if entries.is_empty() {
            return Err(split("lists no images; a split file maps image paths to labels".into()));
        }
        let (items, classes) = remap_json_labels(&entries).map_err(split)?;
        let items = items.into_iter().map(|(p, l)| (image_dir.join(p), l)).collect::<Vec<_>>();
        if let Some((p, _)) = items.iter().find(|(p, _)| !p.is_file()) {
            return Err(DataError::corrupt(
                p,
                "listed in the split file but missing",
                format!("put the images under {}", image_dir.display()),
            ));
        }
        Self::new(json.display().to_string(), items, classes, transform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;

    #[test]
    fn json_labels_remap_sorted_per_split() {
        let m =
            parse_split_object(r#"{"b/1.jpg": "132", "a/2.jpg": "001", "c/3.jpg": "132", "d/4.jpg": "010"}"#).unwrap();
        let (items, names) = remap_json_labels(&m).unwrap();
        assert_eq!(names, vec!["001", "010", "132"]);
        assert_eq!(
            items,
            vec![("a/2.jpg".into(), 0), ("b/1.jpg".into(), 2), ("c/3.jpg".into(), 2), ("d/4.jpg".into(), 1)]
        );
        let m = parse_split_object(r#"{"x": 111, "y": 1, "z": 20}"#).unwrap();
        let (items, _) = remap_json_labels(&m).unwrap();
        assert_eq!(items.iter().map(|i| i.1).collect::<Vec<_>>(), vec![2, 0, 1]);
        let m = parse_split_object(r#"{"x": 1, "y": "2"}"#).unwrap();
        assert!(remap_json_labels(&m).unwrap_err().contains("mix"));
    }

    #[test]
    fn duplicate_keys_and_non_objects_are_refused() {
        let e = parse_split_object(r#"{"a.png": 1, "b.png": 2, "a.png": 3}"#).unwrap_err();
        assert!(e.contains("image 'a.png' is listed twice"), "{e}");
        assert!(parse_split_object("[1, 2]").unwrap_err().contains("JSON object"));
        assert!(parse_split_object(r#"{"a": 1} x"#).is_err());
    }

    #[test]
    fn json_split_loads_and_names_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        crate::folder::tests::write_png(&r.join("train/cat/1.png"), 10);
        crate::folder::tests::write_png(&r.join("train/dog/2.png"), 20);
        std::fs::write(r.join("train.json"), r#"{"train/cat/1.png": 5, "train/dog/2.png": 9}"#).unwrap();
        let js = ImageListDataset::json_split(&r.join("train.json"), r, ImageTransform::IDENTITY).unwrap();
        assert_eq!(js.labels(), vec![0, 1]);
        let load = |name: &str| {
            ImageListDataset::json_split(&r.join(name), r, ImageTransform::IDENTITY).unwrap_err().to_string()
        };
        std::fs::write(r.join("val.json"), r#"{"nope.png": 1}"#).unwrap();
        let e = load("val.json");
        assert!(e.contains("nope.png") && e.contains("missing"), "{e}");
        let e = load("test.json");
        assert!(e.contains("test.json: is missing") && e.contains("needs train.json, val.json and test.json"), "{e}");
        std::fs::write(r.join("val.json"), "{}").unwrap();
        assert!(load("val.json").contains("lists no images"));
    }
}
