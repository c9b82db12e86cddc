-- The load scenario: non-streamed chat completions with a small prompt.
-- wrk -t1 -c32 -d10s --latency -s benches/wrk/chat.lua http://127.0.0.1:8080
-- (benches/k6/chat.js is the same scenario for k6 users.)
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"mock-gpt","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in five words."}],"max_tokens":32}'
-- KEY: an API key to send (for a gateway with authentication on).
local key = os.getenv("KEY")
if key then wrk.headers["Authorization"] = "Bearer " .. key end
