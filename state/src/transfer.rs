//! Export of a study as JSON lines and import back: the study line first, then one line per
//! trial (with its reports).
//!
//! # Format
//!
//! UTF-8 text, one JSON object per line, each with a `"kind"` field:
//!
//! * `{"kind": "study", "name": …, "state": …, "definition": …, "source": …, "message": …,
//!   "created_at": …, "updated_at": …}`: a [`StudyRecord`]'s fields next to `"kind"`.
//! * `{"kind": "trial", "trial": {…}, "reports": [{"step": …, "values": {…}, "at": …}, …]}`:
//!   a [`TrialRecord`] and its intermediate [`Report`]s (`"reports"` may be left out).
//!
//! A study line comes first; the trial lines after it belong to it (their `trial.study` must
//! name it). A file may hold several studies, each a study line followed by its trials. Blank
//! lines are ignored. [`Store::export_study`] writes trials by number and reports by step.

use crate::records::{Report, StudyRecord, TrialRecord};
use crate::store::{
    check_name, check_report, check_study, check_trial, encode_now, report_key, trial_key, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};
use sled::transaction::abort;
use std::collections::BTreeSet;
use std::io::{BufRead, Write};

/// One line of an export file (see the [module docs](self) for the format).
// One line is handled at a time, so the size difference between the variants does not matter,
// and boxing the trial would make the format type clumsier to build and match.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportLine {
    /// A study: `{"kind": "study", <StudyRecord fields>}`.
    Study(StudyRecord),
    /// A trial of the study on the last study line, with its reports:
    /// `{"kind": "trial", "trial": {...}, "reports": [...]}`.
    Trial {
        /// The trial.
        trial: TrialRecord,
        /// Its intermediate reports, by step.
        #[serde(default)]
        reports: Vec<Report>,
    },
}

/// What [`Store::import`] stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// The studies created, in the order of the input.
    pub studies: Vec<String>,
    /// How many trials were stored, over all studies.
    pub trials: usize,
}

/// One study of an import, parsed and validated.
struct Pending {
    study: StudyRecord,
    trials: Vec<(TrialRecord, Vec<Report>)>,
}

impl Store {
    /// Writes a study as JSON lines: its study line, then one trial line per trial by number,
    /// each with its reports. Fails with `NoStudy` if it does not exist, `Write` if `out` fails.
    pub fn export_study(&self, name: &str, out: &mut dyn Write) -> Result<(), StoreError> {
        let study = self
            .study(name)?
            .ok_or_else(|| StoreError::NoStudy(name.to_string()))?;
        write_line(out, &ExportLine::Study(study))?;
        for trial in self.trials(name)? {
            let reports = self.reports(name, trial.number)?;
            write_line(out, &ExportLine::Trial { trial, reports })?;
        }
        out.flush().map_err(StoreError::Write)
    }

    /// Reads JSON lines (as [`Store::export_study`] writes them) and stores their studies,
    /// trials and reports, all in one transaction, then flushes: either everything is stored
    /// or nothing. Every line is parsed and checked first; a bad line fails with `Import`
    /// naming it (1-based). A study that already exists fails with `StudyExists`. Each
    /// imported study gets the event "study imported (N trials)"; records are stored as they
    /// are in the input.
    pub fn import(&self, input: &mut dyn BufRead) -> Result<ImportSummary, StoreError> {
        let pending = parse(input)?;
        for p in &pending {
            if self.study(&p.study.name)?.is_some() {
                return Err(StoreError::StudyExists(p.study.name.clone()));
            }
        }
        let mut encoded = Vec::with_capacity(pending.len());
        let mut summary = ImportSummary::default();
        for p in &pending {
            let mut trials = Vec::with_capacity(p.trials.len());
            for (t, reports) in &p.trials {
                let reports = reports
                    .iter()
                    .map(|r| Ok((report_key(&t.study, t.number, r.step), encode_now(r)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                trials.push((trial_key(&t.study, t.number), encode_now(t)?, reports));
            }
            summary.studies.push(p.study.name.clone());
            summary.trials += trials.len();
            encoded.push((p.study.name.as_str(), encode_now(&p.study)?, trials));
        }
        self.write(|tx, log| {
            for (name, study, trials) in &encoded {
                if tx.studies.get(name.as_bytes())?.is_some() {
                    return abort(StoreError::StudyExists(name.to_string()));
                }
                if tx.meta.get(crate::purge::purge_key(name))?.is_some() {
                    return abort(StoreError::BeingDeleted(name.to_string()));
                }
                tx.studies.insert(name.as_bytes(), study.as_slice())?;
                for (key, value, reports) in trials {
                    tx.trials.insert(key.as_slice(), value.as_slice())?;
                    for (key, value) in reports {
                        tx.reports.insert(key.as_slice(), value.as_slice())?;
                    }
                }
                log.append(
                    tx,
                    name,
                    None,
                    format!("study imported ({} trials)", trials.len()),
                )?;
            }
            Ok(())
        })?;
        Ok(summary)
    }
}

fn write_line(out: &mut dyn Write, line: &ExportLine) -> Result<(), StoreError> {
    let mut buf = encode_now(line)?;
    buf.push(b'\n');
    out.write_all(&buf).map_err(StoreError::Write)
}

/// Parses and validates every line of an import.
fn parse(input: &mut dyn BufRead) -> Result<Vec<Pending>, StoreError> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    let mut buf = String::new();
    let mut line = 0;
    loop {
        buf.clear();
        line += 1;
        let err = |detail: String| StoreError::Import { line, detail };
        let invalid = |e: StoreError| match e {
            StoreError::Invalid(detail) => StoreError::Import { line, detail },
            other => other,
        };
        let n = input
            .read_line(&mut buf)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        if buf.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine =
            serde_json::from_str(&buf).map_err(|e| err(format!("not a valid line: {e}")))?;
        match parsed {
            ExportLine::Study(study) => {
                check_name(&study.name).map_err(invalid)?;
                check_study(&study).map_err(invalid)?;
                if !names.insert(study.name.clone()) {
                    return Err(err(format!("study '{}' appears twice", study.name)));
                }
                numbers.clear();
                pending.push(Pending {
                    study,
                    trials: Vec::new(),
                });
            }
            ExportLine::Trial { trial, reports } => {
                let Some(current) = pending.last_mut() else {
                    return Err(err("a trial line before any study line".to_string()));
                };
                if trial.study != current.study.name {
                    return Err(err(format!(
                        "trial {} names study '{}' but follows the line of study '{}'",
                        trial.number, trial.study, current.study.name
                    )));
                }
                if !numbers.insert(trial.number) {
                    return Err(err(format!(
                        "trial {} of study '{}' appears twice",
                        trial.number, trial.study
                    )));
                }
                check_trial(&trial).map_err(invalid)?;
                for r in &reports {
                    check_report(&trial.study, trial.number, r).map_err(invalid)?;
                }
                current.trials.push((trial, reports));
            }
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{StudyState, TrialState};
    use crate::store::tests::{report, study, trial};
    use quantune_strategies::ParamValue;

    fn populated() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut s = study("qat-llama");
        s.state = StudyState::Completed;
        s.message = Some("20 trials finished".into());
        store.create_study(&s).unwrap();
        store.update_study(&s).unwrap();
        for n in [0u64, 1, 2, 300] {
            let mut t = trial("qat-llama", n);
            t.state = TrialState::Complete;
            std::sync::Arc::make_mut(&mut t.metrics)
                .insert("eval_loss".into(), 2.0 + n as f64 / 7.0);
            std::sync::Arc::make_mut(&mut t.params)
                .insert("x".into(), ParamValue::Float(0.1 + 0.2));
            t.started_at = Some(10.0);
            t.finished_at = Some(12.5);
            store.put_trial(&t).unwrap();
            for step in [100u64, 200] {
                store
                    .add_report("qat-llama", n, &report(step, 3.0 / step as f64))
                    .unwrap();
            }
        }
        store.create_study(&study("other")).unwrap();
        store.put_trial(&trial("other", 0)).unwrap();
        (dir, store)
    }

    fn export(store: &Store, name: &str) -> String {
        let mut out = Vec::new();
        store.export_study(name, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn import(store: &Store, text: &str) -> Result<ImportSummary, StoreError> {
        store.import(&mut text.as_bytes())
    }

    #[test]
    fn export_then_import_gives_identical_records() {
        let (_dir, store) = populated();
        let text = export(&store, "qat-llama");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["kind"], "study");
        assert_eq!(lines[0]["name"], "qat-llama");
        assert_eq!(lines[1]["kind"], "trial");
        assert_eq!(lines[4]["trial"]["number"], 300);
        assert_eq!(lines[4]["reports"][1]["step"], 200);

        let dir2 = tempfile::tempdir().unwrap();
        let fresh = Store::open(dir2.path()).unwrap();
        let summary = import(&fresh, &text).unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                studies: vec!["qat-llama".into()],
                trials: 4
            }
        );
        assert_eq!(
            fresh.studies().unwrap(),
            vec![store.study("qat-llama").unwrap().unwrap()]
        );
        assert_eq!(
            fresh.trials("qat-llama").unwrap(),
            store.trials("qat-llama").unwrap()
        );
        for n in [0u64, 1, 2, 300] {
            assert_eq!(
                fresh.reports("qat-llama", n).unwrap(),
                store.reports("qat-llama", n).unwrap()
            );
        }
        // Byte-identical when exported again.
        assert_eq!(export(&fresh, "qat-llama"), text);
        let events = fresh.events(Some("qat-llama"), 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].what, "study imported (4 trials)");
        // Durable: survives a reopen.
        drop(fresh);
        let fresh = Store::open(dir2.path()).unwrap();
        assert_eq!(fresh.trials("qat-llama").unwrap().len(), 4);
    }

    #[test]
    fn import_takes_several_studies_and_skips_blank_lines() {
        let (_dir, store) = populated();
        let text = format!(
            "\n{}\n   \n{}",
            export(&store, "qat-llama"),
            export(&store, "other")
        );
        let dir2 = tempfile::tempdir().unwrap();
        let fresh = Store::open(dir2.path()).unwrap();
        let summary = import(&fresh, &text).unwrap();
        assert_eq!(summary.studies, ["qat-llama", "other"]);
        assert_eq!(summary.trials, 5);
        // A trial line may leave out its reports.
        let minimal = format!(
            "{}\n{{\"kind\":\"trial\",\"trial\":{}}}\n",
            serde_json::to_string(&ExportLine::Study(study("min"))).unwrap(),
            serde_json::to_string(&trial("min", 4)).unwrap()
        );
        assert_eq!(import(&fresh, &minimal).unwrap().trials, 1);
        assert!(fresh.trial("min", 4).unwrap().is_some());
    }

    #[test]
    fn import_errors_name_the_line_and_store_nothing() {
        let (_dir, store) = populated();
        let text = export(&store, "qat-llama");
        let lines: Vec<&str> = text.lines().collect();
        let dir2 = tempfile::tempdir().unwrap();
        let fresh = Store::open(dir2.path()).unwrap();
        let line_of = |r: Result<ImportSummary, StoreError>| match r {
            Err(StoreError::Import { line, detail }) => (line, detail),
            other => panic!("expected an import error, got {other:?}"),
        };

        // Not JSON, after a blank line: line numbers count every line.
        let bad = format!("{}\n\n{}\n{{oops\n", lines[0], lines[1]);
        let (line, detail) = line_of(import(&fresh, &bad));
        assert_eq!(line, 4, "{detail}");
        // An unknown kind.
        let (line, detail) = line_of(import(&fresh, &format!("{}\n{{\"kind\":\"x\"}}", lines[0])));
        assert_eq!(line, 2, "{detail}");
        // A trial before any study.
        let (line, detail) = line_of(import(&fresh, lines[1]));
        assert_eq!(line, 1);
        assert!(detail.contains("before any study"), "{detail}");
        // A trial naming another study.
        let stray = format!(
            "{{\"kind\":\"trial\",\"trial\":{}}}",
            serde_json::to_string(&trial("other", 9)).unwrap()
        );
        let (line, detail) = line_of(import(
            &fresh,
            &format!("{}\n{}\n{stray}", lines[0], lines[1]),
        ));
        assert_eq!(line, 3);
        assert!(detail.contains("'other'"), "{detail}");
        // The same trial twice.
        let (line, _) = line_of(import(
            &fresh,
            &format!("{}\n{}\n{}", lines[0], lines[2], lines[2]),
        ));
        assert_eq!(line, 3);
        // The same study twice.
        let (line, _) = line_of(import(&fresh, &format!("{}\n{}", lines[0], lines[0])));
        assert_eq!(line, 2);
        assert!(fresh.studies().unwrap().is_empty());
        assert!(fresh.events(None, 100).unwrap().is_empty());

        // A study that exists already: nothing of the input is stored, not even the new one.
        fresh.create_study(&study("other")).unwrap();
        let both = format!("{text}{}", export(&store, "other"));
        assert!(matches!(
            import(&fresh, &both),
            Err(StoreError::StudyExists(n)) if n == "other"
        ));
        assert_eq!(fresh.study("qat-llama").unwrap(), None);
        assert!(fresh.trials("qat-llama").unwrap().is_empty());
        assert!(fresh.trials("other").unwrap().is_empty());
    }

    #[test]
    fn export_errors() {
        let (_dir, store) = populated();
        let mut out = Vec::new();
        assert!(matches!(
            store.export_study("nope", &mut out),
            Err(StoreError::NoStudy(_))
        ));
        assert!(out.is_empty());
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(matches!(
            store.export_study("qat-llama", &mut Broken),
            Err(StoreError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe
        ));
    }
}
