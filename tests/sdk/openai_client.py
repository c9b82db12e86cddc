"""The official `openai` SDK against the gateway: both models (one behind an
OpenAI-style pool, one behind an Anthropic-style pool) through Chat
Completions, as JSON and streamed, a tool-call round trip, and each error
class reaching the SDK's own exception with the gateway's message.

Usage: openai_client.py BASE_URL KEY OTHER_MODELS_KEY
Prints one line per check; exits non-zero at the first that fails.
"""

import json
import sys

import openai
from openai import OpenAI

BASE, KEY, LIMITED_KEY = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30)
HI = [{"role": "user", "content": "hi"}]
WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


for model in ["mock-gpt", "mock-claude"]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HI)
    chat = raw.parse()
    check(f"{model} chat", bool(chat.choices[0].message.content), chat)
    check(f"{model} finish_reason", chat.choices[0].finish_reason == "stop", chat)
    check(f"{model} usage", chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0, chat.usage)
    check(f"{model} x-gateway-model", raw.headers.get("x-gateway-model") == model, raw.headers)

    stream = client.chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    check(f"{model} stream text", bool(text))
    check(f"{model} stream finish", finish == "stop", finish)
    check(f"{model} stream usage", usage is not None and usage.completion_tokens > 0, usage)

    # A tool call, streamed: the argument deltas join into JSON.
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=WEATHER, stream=True)
    name, arguments, call_id = None, "", None
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = call.function.name or name
            call_id = call.id or call_id
            arguments += call.function.arguments or ""
    check(f"{model} streamed tool call", name == "get_weather" and "city" in json.loads(arguments), arguments)

    # The round trip: the call as JSON, then its result.
    first = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=WEATHER, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    check(f"{model} tool call", first.choices[0].finish_reason == "tool_calls"
          and json.loads(call.function.arguments)["city"], first)
    second = client.chat.completions.create(model=model, tools=WEATHER, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ])
    check(f"{model} tool result used", "The tool said: sunny, 21 C" in second.choices[0].message.content,
          second.choices[0].message.content)


def expect(name, exception, call, *, status, words):
    try:
        call()
    except exception as e:
        message = json.dumps(e.body)
        check(name, e.status_code == status and words in message and isinstance(e.body, dict),
              f"{e.status_code} {message}")
        return
    except openai.APIStatusError as e:
        raise AssertionError(f"{name}: got {type(e).__name__} {e.status_code} {e.body}")
    raise AssertionError(f"{name}: no error")


def create(**kwargs):
    args = {"model": "mock-claude", "messages": HI}
    args.update(kwargs)
    return lambda: client.chat.completions.create(**args)


bad_key = OpenAI(base_url=f"{BASE}/v1", api_key="sk-wrong", max_retries=0)
limited = OpenAI(base_url=f"{BASE}/v1", api_key=LIMITED_KEY, max_retries=0)
expect("401 AuthenticationError", openai.AuthenticationError,
       lambda: bad_key.chat.completions.create(model="mock-claude", messages=HI),
       status=401, words="credentials")
expect("403 PermissionDeniedError", openai.PermissionDeniedError,
       lambda: limited.chat.completions.create(model="mock-claude", messages=HI),
       status=403, words="mock-claude")
expect("404 NotFoundError", openai.NotFoundError, create(model="no-such-model"),
       status=404, words="no-such-model")
expect("400 BadRequestError (a parameter Anthropic lacks)", openai.BadRequestError, create(seed=7),
       status=400, words="seed")
expect("413 APIStatusError", openai.APIStatusError,
       create(messages=[{"role": "user", "content": "x" * 100_000}]), status=413, words="larger than")
client.chat.completions.create(model="mock-claude-tiny", messages=HI)
expect("429 RateLimitError", openai.RateLimitError, create(model="mock-claude-tiny"),
       status=429, words="Rate limit")
for status in [500, 503, 529]:
    expect(f"{status} InternalServerError (from the Anthropic-style pool)", openai.InternalServerError,
           create(extra_headers={"x-mock-status": str(status)}), status=status, words="mock")
expect("502 InternalServerError (no upstream answers)", openai.InternalServerError,
       create(model="mock-dead"), status=502, words="upstream")
print("all checks passed")
