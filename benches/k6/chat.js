// The same scenario as benches/wrk/chat.lua, for k6:
//   k6 run -e TARGET=http://127.0.0.1:8080 --vus 32 --duration 10s benches/k6/chat.js
import http from "k6/http";
import { check } from "k6";

const target = __ENV.TARGET || "http://127.0.0.1:8080";
const body = JSON.stringify({
  model: "mock-gpt",
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Say hello in five words." },
  ],
  max_tokens: 32,
});

export default function () {
  const res = http.post(`${target}/v1/chat/completions`, body, {
    headers: { "Content-Type": "application/json" },
  });
  check(res, { "status is 200": (r) => r.status === 200 });
}
