"""The official `openai` SDK over HTTP/2 and TLS: the SDK's own HTTP client
(httpx2, the httpx line this SDK version is built on) with `http2=True`, trusting the test's CA, for a chat and a streamed chat, on one
connection.

Usage: openai_http2.py BASE_URL CA_FILE KEY
Prints one line per check; exits non-zero at the first that fails.
"""

import sys

import httpx2
from openai import OpenAI

BASE, CA_FILE, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
http = httpx2.Client(http2=True, verify=CA_FILE, timeout=30)
client = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, http_client=http)
HI = [{"role": "user", "content": "hi"}]


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=HI)
check("http2 chat version", raw.http_response.http_version == "HTTP/2", raw.http_response.http_version)
chat = raw.parse()
check("http2 chat", bool(chat.choices[0].message.content), chat)

with client.chat.completions.with_streaming_response.create(
        model="mock-gpt", messages=HI, stream=True, stream_options={"include_usage": True}) as response:
    check("http2 stream version", response.http_response.http_version == "HTTP/2")
    text, usage = "", None
    for chunk in response.parse():
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
check("http2 stream text", bool(text))
check("http2 stream usage", usage is not None and usage.completion_tokens > 0, usage)
