//! The fuzz targets that read upstream bytes start from the golden inputs
//! above: `fuzz/seeds/<target>/<name>` holds each, behind the target's
//! header bytes. This test keeps the files equal to the goldens;
//! `UPDATE_FUZZ_SEEDS=1` writes them.

use std::path::PathBuf;

use serde_json::Value;

use super::gemini::{gemini_answer, GEMINI_STREAM};
use super::{anthropic_answer, ANTHROPIC_STREAM, OPENAI_STREAM};
use crate::llm::{ClientDialect, Dialect};

/// Chunk sizes that cut every golden stream mid-event.
const CUTS: [u8; 4] = [6, 40, 1, 200];

/// `sse_usage`, `stream_translation` and `answer_translation` name the
/// upstream's dialect in their flags (`sse_usage` two bits higher).
fn dialect_bits(d: Dialect) -> u8 {
    match d {
        Dialect::OpenAi => 0,
        Dialect::Anthropic => 1,
        Dialect::Gemini => 2,
    }
}

fn client_bit(to: ClientDialect) -> u8 {
    match to {
        ClientDialect::OpenAi => 0,
        ClientDialect::Anthropic => 4,
    }
}

fn seed(header: &[u8], body: &[u8]) -> Vec<u8> {
    [header, body].concat()
}

fn openai_answer() -> Value {
    let translated = super::super::response(
        Dialect::Anthropic,
        ClientDialect::OpenAi,
        anthropic_answer().to_string().as_bytes(),
    )
    .expect("the golden answer translates");
    let mut answer: Value = serde_json::from_slice(&translated.body).expect("JSON");
    // The translation's creation time, fixed so the seed stays the same.
    answer["created"] = 1_700_000_000.into();
    answer
}

/// Every seed: its target, its name and its bytes.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let streams = [
        (Dialect::OpenAi, "openai", OPENAI_STREAM),
        (Dialect::Anthropic, "anthropic", ANTHROPIC_STREAM),
        (Dialect::Gemini, "gemini", GEMINI_STREAM),
    ];
    let answers = [
        (Dialect::OpenAi, "openai", openai_answer()),
        (Dialect::Anthropic, "anthropic", anthropic_answer()),
        (Dialect::Gemini, "gemini", gemini_answer("STOP")),
    ];
    let clients = [
        (ClientDialect::OpenAi, "openai"),
        (ClientDialect::Anthropic, "anthropic"),
    ];
    let mut out = Vec::new();
    for (from, name, stream) in streams {
        out.push((
            "sse_framer",
            name.to_string(),
            seed(&CUTS, stream.as_bytes()),
        ));
        let usage_flags = 1 | (dialect_bits(from) << 2);
        out.push((
            "sse_usage",
            format!("{name}_stream"),
            seed(&[&[usage_flags][..], &CUTS].concat(), stream.as_bytes()),
        ));
        for (to, client) in clients {
            if to.dialect() == from {
                continue;
            }
            // With the usage chunk asked for (bit 3).
            let flags = dialect_bits(from) | client_bit(to) | 8;
            out.push((
                "stream_translation",
                format!("{name}_to_{client}"),
                seed(&[&[flags][..], &CUTS].concat(), stream.as_bytes()),
            ));
        }
    }
    for (from, name, answer) in answers {
        let body = answer.to_string();
        out.push((
            "sse_usage",
            format!("{name}_answer"),
            seed(
                &[&[dialect_bits(from) << 2][..], &CUTS].concat(),
                body.as_bytes(),
            ),
        ));
        for (to, client) in clients {
            if to.dialect() == from {
                continue;
            }
            let flags = dialect_bits(from) | client_bit(to);
            out.push((
                "answer_translation",
                format!("{name}_to_{client}"),
                seed(&[flags], body.as_bytes()),
            ));
        }
    }
    out
}

#[test]
fn the_fuzz_seeds_are_the_golden_inputs() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let update = std::env::var_os("UPDATE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = root.join(target).join(&name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let found = std::fs::read(&path).unwrap_or_default();
        assert!(
            found == bytes,
            "{} is not the golden input: run UPDATE_FUZZ_SEEDS=1 cargo test fuzz_seeds",
            path.display()
        );
    }
}
