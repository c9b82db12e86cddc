"""The official `anthropic` SDK against the gateway: both models (one behind
an OpenAI-style pool, one behind an Anthropic-style pool) through Messages,
as JSON and streamed, a tool-use round trip, and each error class reaching
the SDK's own exception with the gateway's message and request id.

Usage: anthropic_client.py BASE_URL KEY OTHER_MODELS_KEY
Prints one line per check; exits non-zero at the first that fails.
"""

import json
import sys

import anthropic
from anthropic import Anthropic

BASE, KEY, LIMITED_KEY = sys.argv[1], sys.argv[2], sys.argv[3]
client = Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)
HI = [{"role": "user", "content": "hi"}]
WEATHER = [{
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


for model in ["mock-gpt", "mock-claude"]:
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=64, system="Be brief.", messages=HI)
    message = raw.parse()
    check(f"{model} message", message.type == "message" and message.content[0].type == "text"
          and bool(message.content[0].text), message)
    check(f"{model} stop_reason", message.stop_reason == "end_turn", message.stop_reason)
    check(f"{model} usage", message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage)
    check(f"{model} x-gateway-model", raw.headers.get("x-gateway-model") == model, raw.headers)

    with client.messages.stream(model=model, max_tokens=64, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(f"{model} stream text", bool(text) and final.content[0].text == text, text)
    check(f"{model} stream stop_reason", final.stop_reason == "end_turn", final.stop_reason)
    check(f"{model} stream usage", final.usage.output_tokens > 0, final.usage)

    # A tool use, streamed: the SDK joins the input_json deltas itself.
    with client.messages.stream(model=model, max_tokens=100, tools=WEATHER,
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    tool_use = next(block for block in final.content if block.type == "tool_use")
    check(f"{model} streamed tool use", tool_use.name == "get_weather" and tool_use.input.get("city")
          and final.stop_reason == "tool_use", final)

    # The round trip, as JSON.
    first = client.messages.create(model=model, max_tokens=100, tools=WEATHER,
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    tool_use = next(block for block in first.content if block.type == "tool_use")
    check(f"{model} tool use", first.stop_reason == "tool_use" and tool_use.input.get("city"), first)
    second = client.messages.create(model=model, max_tokens=100, tools=WEATHER, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rainy"}]},
    ])
    check(f"{model} tool result used", "The tool said: rainy" in second.content[0].text, second.content)


def expect(name, exception, call, *, status, kind, words):
    try:
        call()
    except exception as e:
        body = e.body if isinstance(e.body, dict) else {}
        error = body.get("error", {})
        check(name, e.status_code == status and body.get("type") == "error" and error.get("type") == kind
              and words in error.get("message", "") and e.request_id is not None,
              f"{e.status_code} {json.dumps(e.body)} request_id={e.request_id}")
        return
    except anthropic.APIStatusError as e:
        raise AssertionError(f"{name}: got {type(e).__name__} {e.status_code} {e.body}")
    raise AssertionError(f"{name}: no error")


def create(**kwargs):
    args = {"model": "mock-gpt", "max_tokens": 16, "messages": HI}
    args.update(kwargs)
    return lambda: client.messages.create(**args)


bad_key = Anthropic(base_url=BASE, api_key="sk-wrong", max_retries=0)
limited = Anthropic(base_url=BASE, api_key=LIMITED_KEY, max_retries=0)
expect("401 AuthenticationError", anthropic.AuthenticationError,
       lambda: bad_key.messages.create(model="mock-gpt", max_tokens=16, messages=HI),
       status=401, kind="authentication_error", words="credentials")
expect("403 PermissionDeniedError", anthropic.PermissionDeniedError,
       lambda: limited.messages.create(model="mock-gpt", max_tokens=16, messages=HI),
       status=403, kind="permission_error", words="mock-gpt")
expect("404 NotFoundError", anthropic.NotFoundError, create(model="no-such-model"),
       status=404, kind="not_found_error", words="no-such-model")
expect("400 BadRequestError (a parameter OpenAI lacks)", anthropic.BadRequestError,
       create(extra_body={"top_k": 5}), status=400, kind="invalid_request_error", words="top_k")
expect("400 BadRequestError (an SDK parameter OpenAI lacks)", anthropic.BadRequestError,
       create(container="container_1"), status=400, kind="invalid_request_error", words="container")
expect("413 ContentTooLargeError", anthropic.ContentTooLargeError,
       create(messages=[{"role": "user", "content": "x" * 100_000}]),
       status=413, kind="request_too_large", words="larger than")
client.messages.create(model="mock-claude-tiny", max_tokens=16, messages=HI)
expect("429 RateLimitError", anthropic.RateLimitError, create(model="mock-claude-tiny"),
       status=429, kind="rate_limit_error", words="Rate limit")
for status, exception, kind in [
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.ServiceUnavailableError, "overloaded_error"),
]:
    expect(f"{status} {exception.__name__} (from the OpenAI-style pool)", exception,
           create(extra_headers={"x-mock-status": str(status)}), status=status, kind=kind, words="mock")
expect("529 OverloadedError (from the Anthropic-style pool)", anthropic.OverloadedError,
       create(model="mock-claude", extra_headers={"x-mock-status": "529"}),
       status=529, kind="overloaded_error", words="mock")
expect("502 InternalServerError (no upstream answers)", anthropic.InternalServerError,
       create(model="mock-dead"), status=502, kind="api_error", words="upstream")
print("all checks passed")
