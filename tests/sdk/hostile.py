"""Both official SDKs on streams that an upstream breaks after its 200,
translated both ways (the OpenAI SDK on a model behind Anthropic's API, the
Anthropic SDK on one behind OpenAI's): each break reaches the SDK as its own
API error, raised while iterating, never as a complete answer, a hang or a
transport error; unknown events and data after the end leave the answer
whole.

Usage: hostile.py BASE_URL KEY OPENAI_CLIENTS_MODEL ANTHROPIC_CLIENTS_MODEL
Prints one line per check; exits non-zero at the first that fails.
"""

import sys

import anthropic
import openai
from anthropic import Anthropic
from openai import OpenAI

BASE, KEY, GPT_CLIENT_MODEL, CLAUDE_CLIENT_MODEL = sys.argv[1:5]
oai = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30)
ant = Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)
BREAKS = ["cut-mid-event", "cut-mid-char", "not-json", "wrong-shape", "error-event"]
WHOLE = ["unknown-events", "trailing-data"]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


def openai_stream(fault):
    text = ""
    for chunk in oai.chat.completions.create(
            model=GPT_CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-mock-fault": fault}):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    return text


def anthropic_stream(fault):
    with ant.messages.stream(model=CLAUDE_CLIENT_MODEL, max_tokens=64,
                             messages=[{"role": "user", "content": "hi"}],
                             extra_headers={"x-mock-fault": fault}) as stream:
        return "".join(stream.text_stream)


for name, run, api_error, connection_error in [
        ("openai", openai_stream, openai.APIError, openai.APIConnectionError),
        ("anthropic", anthropic_stream, anthropic.APIError, anthropic.APIConnectionError)]:
    for fault in BREAKS:
        try:
            text = run(fault)
        except connection_error as e:
            raise AssertionError(f"{name} {fault}: a transport error, not an API error: {e!r}")
        except api_error as e:
            check(f"{name} {fault} raises {type(e).__name__}", bool(str(e)), repr(e))
            continue
        raise AssertionError(f"{name} {fault}: the stream looked complete: {text!r}")
    for fault in WHOLE:
        text = run(fault)
        check(f"{name} {fault} whole", "word" in text and "after the end" not in text, text)
