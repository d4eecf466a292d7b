//! Renaming the study in an export (`quantune import --as NAME`, `quantune copy`): the study
//! line's `name` and `definition.name`, and every trial line's `trial.study`. The stored
//! TOML `source` is kept as it was written (it is what the study was submitted as).

use crate::model::study::check_study_name;
use serde_json::Value;

/// The export JSON lines `data` with its one study renamed to `to`. Refuses an invalid name,
/// and an export that holds no study or several (a backup: rename needs one study).
pub fn rename_export(data: &[u8], to: &str) -> Result<Vec<u8>, String> {
    check_study_name(to).map_err(|m| format!("--as: {m}"))?;
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut studies = 0usize;
    for (i, raw) in data.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut line: Value = serde_json::from_slice(raw)
            .map_err(|e| format!("import line {}: not a valid line: {e}", i + 1))?;
        match line["kind"].as_str() {
            Some("study") => {
                studies += 1;
                if studies > 1 {
                    return Err(format!(
                        "import line {}: the file holds several studies; --as renames a file of one study (as `quantune export STUDY` writes it)",
                        i + 1
                    ));
                }
                line["name"] = Value::from(to);
                if let Some(def) = line.get_mut("definition").and_then(Value::as_object_mut) {
                    def.insert("name".into(), Value::from(to));
                }
            }
            Some("trial") => {
                if let Some(t) = line.get_mut("trial").and_then(Value::as_object_mut) {
                    t.insert("study".into(), Value::from(to));
                }
            }
            // The import names what is wrong with the line.
            _ => {}
        }
        serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    if studies == 0 {
        return Err("the file holds no study line; nothing to import".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_the_study_and_its_trials_only() {
        let data = br#"{"kind":"study","name":"a","definition":{"name":"a","seed":1},"source":"name = \"a\""}
{"kind":"trial","trial":{"study":"a","number":0},"reports":[]}

"#;
        let out = String::from_utf8(rename_export(data, "b-2").unwrap()).unwrap();
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["name"], "b-2");
        assert_eq!(lines[0]["definition"]["name"], "b-2");
        assert_eq!(lines[0]["definition"]["seed"], 1);
        assert_eq!(lines[0]["source"], "name = \"a\"");
        assert_eq!(lines[1]["trial"]["study"], "b-2");
        assert_eq!(lines[1]["trial"]["number"], 0);
    }

    #[test]
    fn refuses_bad_names_and_files_of_several_or_no_studies() {
        let one = br#"{"kind":"study","name":"a","definition":{}}"#;
        assert!(rename_export(one, "Bad Name").unwrap_err().contains("--as"));
        let two = b"{\"kind\":\"study\",\"name\":\"a\"}\n{\"kind\":\"study\",\"name\":\"b\"}\n";
        assert!(rename_export(two, "c")
            .unwrap_err()
            .contains("several studies"));
        assert!(rename_export(b"\n", "c").unwrap_err().contains("no study"));
        assert!(rename_export(b"{oops", "c").unwrap_err().contains("line 1"));
    }
}
