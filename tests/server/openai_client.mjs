// The official `openai` npm client against xcaption serve: plain and streamed chat completions
// must give the CLI's caption; the model list and a refused request surface as the client expects.
// Usage: node openai_client.mjs BASE_URL API_KEY IMAGE EXPECTED_CAPTION
import OpenAI from "openai";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const [baseUrl, apiKey, image, expected] = process.argv.slice(2);
const client = new OpenAI({ baseURL: baseUrl + "/v1", apiKey, maxRetries: 0, timeout: 60_000 });
const url = "data:image/png;base64," + readFileSync(image).toString("base64");
const messages = [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }];

const models = await client.models.list();
assert.ok(models.data.length === 1 && models.data[0].id, "GET /v1/models lists the loaded model");
const model = models.data[0].id;

const plain = await client.chat.completions.create({ model, messages });
assert.equal(plain.object, "chat.completion");
assert.equal(plain.choices[0].message.content, expected, "non-streamed content is the CLI's caption");
assert.equal(plain.choices[0].finish_reason, "stop");
assert.ok(plain.usage.completion_tokens > 0 && plain.usage.total_tokens > plain.usage.completion_tokens);

const stream = await client.chat.completions.create({
  model, messages, stream: true, stream_options: { include_usage: true },
});
let text = "", pieces = 0, finish = null, usage = null;
for await (const chunk of stream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  const choice = chunk.choices[0];
  if (!choice) continue;
  if (choice.delta?.content) { text += choice.delta.content; ++pieces; }
  if (choice.finish_reason) finish = choice.finish_reason;
}
assert.equal(text, expected, "the streamed deltas add up to the CLI's caption");
assert.ok(pieces >= 2, `streamed token by token (${pieces} pieces)`);
assert.equal(finish, "stop");
assert.equal(usage.completion_tokens, plain.usage.completion_tokens);

await assert.rejects(client.chat.completions.create({ model, messages, n: 2 }), (e) => {
  assert.equal(e.status, 400);
  assert.equal(e.code, "unsupported_parameter");
  return true;
});
const wrong = new OpenAI({ baseURL: baseUrl + "/v1", apiKey: apiKey + "-wrong", maxRetries: 0 });
await assert.rejects(wrong.chat.completions.create({ model, messages }), (e) => e.status === 401);
console.log(`openai client: ok (${pieces} streamed pieces): ${text}`);
