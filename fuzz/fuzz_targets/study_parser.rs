//! The study-file parser on arbitrary text: it must return a definition or an error, never
//! panic, and an accepted study must survive the round trip the daemon makes (stored as JSON,
//! read back).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(def) = quantune::model::study::parse(text, "fuzz.toml", std::path::Path::new("/"), None) {
        let json = serde_json::to_value(&def).expect("a parsed study serializes");
        let back: quantune::model::study::StudyDefinition =
            serde_json::from_value(json).expect("a stored study reads back");
        assert_eq!(back.name, def.name);
    }
});
