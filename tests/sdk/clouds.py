"""Both official SDKs against models on the clouds' providers (Azure OpenAI,
the Gemini API, Vertex AI's Gemini and Claude), each through its own API:
as JSON and streamed, a tool round trip, an image, and each error class of
the upstream reaching the SDK's own exception.

Usage: clouds.py BASE_URL KEY MODEL...
Prints one line per check; exits non-zero at the first that fails.
"""

import sys

import anthropic
import openai
from anthropic import Anthropic
from openai import OpenAI

BASE, KEY, MODELS = sys.argv[1], sys.argv[2], sys.argv[3:]
oai = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30)
ant = Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
OAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ANT_TOOLS = [{"name": "get_weather", "description": "Weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


def openai_checks(model):
    chat = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    check(f"openai {model} chat", bool(chat.choices[0].message.content) and chat.usage.prompt_tokens > 0, chat)
    text, usage = "", None
    for chunk in oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                             stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    check(f"openai {model} stream", bool(text) and usage is not None and usage.completion_tokens > 0, usage)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai.chat.completions.create(model=model, messages=question, tools=OAI_TOOLS)
    call = first.choices[0].message.tool_calls[0]
    check(f"openai {model} tool call", first.choices[0].finish_reason == "tool_calls"
          and call.function.name == "get_weather", first)
    second = oai.chat.completions.create(model=model, tools=OAI_TOOLS, messages=question + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ])
    check(f"openai {model} tool result", "The tool said: sunny, 21 C" in second.choices[0].message.content,
          second.choices[0].message.content)
    image = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}])
    check(f"openai {model} image", bool(image.choices[0].message.content), image)
    for status, exception in [(400, openai.BadRequestError), (401, openai.AuthenticationError),
                              (403, openai.PermissionDeniedError), (404, openai.NotFoundError),
                              (429, openai.RateLimitError),
                              (500, openai.InternalServerError), (503, openai.InternalServerError)]:
        try:
            oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"x-mock-status": str(status)})
            raise AssertionError(f"openai {model} {status}: no error")
        except exception as e:
            check(f"openai {model} {status} {exception.__name__}", e.status_code == status, e)


def anthropic_checks(model):
    hi = [{"role": "user", "content": "hi"}]
    message = ant.messages.create(model=model, max_tokens=64, messages=hi)
    check(f"anthropic {model} message", message.content[0].text and message.usage.output_tokens > 0, message)
    with ant.messages.stream(model=model, max_tokens=64, messages=hi) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(f"anthropic {model} stream", bool(text) and final.stop_reason == "end_turn", final)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = ant.messages.create(model=model, max_tokens=100, tools=ANT_TOOLS, messages=question)
    tool_use = next(block for block in first.content if block.type == "tool_use")
    check(f"anthropic {model} tool use", first.stop_reason == "tool_use" and tool_use.input.get("city"), first)
    second = ant.messages.create(model=model, max_tokens=100, tools=ANT_TOOLS, messages=question + [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rainy"}]},
    ])
    check(f"anthropic {model} tool result", "The tool said: rainy" in second.content[0].text, second.content)
    image = ant.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "text", "text": "What is this?"}]}])
    check(f"anthropic {model} image", bool(image.content[0].text), image)
    for status, exception in [(400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
                              (403, anthropic.PermissionDeniedError), (404, anthropic.NotFoundError),
                              (429, anthropic.RateLimitError),
                              (500, anthropic.InternalServerError),
                              (503, anthropic.ServiceUnavailableError)]:
        try:
            ant.messages.create(model=model, max_tokens=16, messages=hi,
                                extra_headers={"x-mock-status": str(status)})
            raise AssertionError(f"anthropic {model} {status}: no error")
        except exception as e:
            check(f"anthropic {model} {status} {exception.__name__}", e.status_code == status, e)


listed = {model.id for model in oai.models.list()}
check("every provider's models listed", set(MODELS) <= listed, listed)
for model in MODELS:
    openai_checks(model)
    anthropic_checks(model)
print("all checks passed")
