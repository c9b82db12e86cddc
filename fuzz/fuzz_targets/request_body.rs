//! The request body inspection and rewrite on any bytes: `inspect` accepts
//! only bodies with a bounded string model, and `rewrite` of an accepted body
//! gives valid JSON in which the model is the new one, usage is asked for,
//! and every other member is what the client sent.
#![no_main]

use ai_api_gateway::llm::{inspect, rewrite, MAX_MODEL_LEN};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let rewritten = rewrite(data, Some("fuzz-alias"), true);
    let found = match inspect(data) {
        Ok(found) => found,
        Err(_) => return,
    };
    assert!(!found.model.is_empty());
    assert!(found.model.len() <= MAX_MODEL_LEN);
    let out = rewritten.expect("rewrite refused a body inspect took");
    // Validity first: numbers out of f64 range are valid JSON that `Value`
    // cannot hold, so `IgnoredAny` is the judge.
    serde_json::from_slice::<IgnoredAny>(&out).expect("rewrite made invalid JSON");
    let again = inspect(&out).expect("a rewritten body does not inspect");
    assert_eq!(again.model, "fuzz-alias");
    assert!(again.include_usage);
    assert_eq!(again.stream, found.stream);
    assert_eq!(again.max_tokens, found.max_tokens);
    // Members other than the two rewritten ones are the client's, unchanged
    // (compared as parsed values; the last duplicate wins on both sides).
    if let (Ok(Value::Object(original)), Ok(Value::Object(sent))) = (
        serde_json::from_slice::<Value>(data),
        serde_json::from_slice::<Value>(&out),
    ) {
        for (key, value) in &original {
            if key != "model" && key != "stream_options" {
                assert_eq!(sent.get(key), Some(value), "member {key:?} changed");
            }
        }
    }
});
