//! API request decoding on arbitrary bytes: the body decoder of each request type, the study
//! source inside a submit body, the trial number of a path, and the import line format. Each
//! must answer with a value or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quantune::daemon::api::{body, trial_number};
use quantune::model::wire::{ReportRequest, SubmitRequest, TellRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(req) = body::<SubmitRequest>(rest) {
                let _ = quantune::model::study::parse(
                    &req.source,
                    req.file.as_deref().unwrap_or("fuzz.toml"),
                    std::path::Path::new("/"),
                    None,
                );
            }
        }
        1 => {
            let _ = body::<ReportRequest>(rest);
        }
        2 => {
            let _ = body::<TellRequest>(rest);
        }
        3 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = trial_number(s);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest) {
                for line in s.lines() {
                    let _ = serde_json::from_str::<quantune_state::ExportLine>(line);
                }
            }
        }
    }
});
