-- Streamed chat answers of EVENTS content events each, in either client API.
-- Environment: API=openai|anthropic, MODEL, EVENTS, KEY (optional).
-- wrk -t1 -c16 -d10s -s benches/wrk/stream.lua http://127.0.0.1:8080
local api = os.getenv("API") or "openai"
local model = os.getenv("MODEL") or "mock-gpt"
local events = os.getenv("EVENTS") or "100"
local key = os.getenv("KEY")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-mock-chunks"] = events
local prompt = '"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Tell me a story."}]'
if api == "anthropic" then
  wrk.path = "/v1/messages"
  wrk.headers["anthropic-version"] = "2023-06-01"
  if key then wrk.headers["x-api-key"] = key end
  wrk.body = '{"model":"' .. model .. '","max_tokens":1024,"stream":true,"system":"You are a helpful assistant.",'
    .. '"messages":[{"role":"user","content":"Tell me a story."}]}'
else
  wrk.path = "/v1/chat/completions"
  if key then wrk.headers["Authorization"] = "Bearer " .. key end
  wrk.body = '{"model":"' .. model .. '","stream":true,' .. prompt .. '}'
end
