//! Each upstream dialect's whole-answer reader and each client dialect's
//! writer: whatever an upstream answers, the translation either fails with
//! a reason or is an answer in the client's shape (OpenAI's one choice with
//! a message, Anthropic's message with a content list) with its usage.
//! Input: a flags byte (bits 0-1: the upstream's dialect, OpenAI, Anthropic,
//! Gemini; bit 2: an Anthropic client, else OpenAI), the upstream's body.
#![no_main]

use ai_api_gateway::llm::translate::{self, Untranslatable};
use ai_api_gateway::llm::{ClientDialect, Dialect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((flags, body)) = data.split_first() else {
        return;
    };
    let from = match flags & 3 {
        1 => Dialect::Anthropic,
        2 => Dialect::Gemini,
        _ => Dialect::OpenAi,
    };
    let to = if flags & 4 == 4 {
        ClientDialect::Anthropic
    } else {
        ClientDialect::OpenAi
    };
    match translate::response(from, to, body) {
        Ok(translated) => {
            let v: serde_json::Value =
                serde_json::from_slice(&translated.body).expect("the answer is JSON");
            match to {
                ClientDialect::OpenAi => {
                    assert_eq!(v["object"], "chat.completion");
                    assert_eq!(v["choices"].as_array().map(Vec::len), Some(1));
                    assert!(v["choices"][0]["message"].is_object());
                    assert!(v["usage"]["prompt_tokens"].is_u64());
                }
                ClientDialect::Anthropic => {
                    assert_eq!(v["type"], "message");
                    assert!(v["content"].is_array());
                    assert!(v["usage"]["input_tokens"].is_u64());
                }
            }
        }
        // An error envelope, or not an answer: the gateway answers an error.
        Err(Untranslatable::UpstreamError(..) | Untranslatable::Invalid) => {}
    }
});
