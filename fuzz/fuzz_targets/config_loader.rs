//! The config loader on any text: it loads or fails with an error that names
//! the file, and an expanded `${SECRET}` never shows up in that error.
#![no_main]

use ai_api_gateway::settings::load_str;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fz-9c1e7a4b2d";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "FUZZ_SECRET").then(|| SECRET.to_string());
    if let Err(e) = load_str(text, "fuzz.yaml", env) {
        let message = e.to_string();
        assert!(message.starts_with("fuzz.yaml: "), "{message}");
        assert!(!e.message.is_empty(), "an error without a message");
        if !text.contains(SECRET) {
            assert!(
                !message.contains(SECRET),
                "secret in a config error: {message}"
            );
        }
    }
});
