// The TypeScript SDK against a live monGARS server. Run by tests/sdk/test_typescript.py, which
// starts the server (fake model backend), two proxies that cut one connection each, and a user:
// MONGARS_URL, MONGARS_SSE_DROP_URL, MONGARS_WS_DROP_URL, MONGARS_USERNAME, MONGARS_PASSWORD.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AuthenticationError,
  MongarsClient,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ValidationError,
  WebSocketError,
} from "../dist/index.js";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through tests/sdk/test_typescript.py`);
  return value;
};
const WORDS = "one two three four five six seven eight nine ten eleven twelve";

async function loggedIn(baseUrl = env("MONGARS_URL")) {
  const client = new MongarsClient({ baseUrl });
  await client.login(env("MONGARS_USERNAME"), env("MONGARS_PASSWORD"));
  return client;
}

test("chat, history pages and conversations", async () => {
  const client = await loggedIn();
  const first = await client.chat("ts question 0");
  assert.equal(first.response, "echo: ts question 0");
  for (const n of [1, 2]) await client.chat(`ts question ${n}`, { conversationId: first.conversation_id });
  const page = await client.history({ limit: 1, conversationId: first.conversation_id });
  assert.ok(page.nextUrl, "the first page links to the next");
  const queries = [];
  for await (const turn of client.iterHistory({ pageSize: 2, conversationId: first.conversation_id })) {
    queries.push(turn.query);
  }
  assert.deepEqual(queries, ["ts question 2", "ts question 1", "ts question 0"]);
  const renamed = await client.renameConversation(first.conversation_id, "From TypeScript");
  assert.equal(renamed.title, "From TypeScript");
  const exported = await client.exportConversation(first.conversation_id);
  assert.equal(exported.messages.length, 6);
  assert.match(await client.exportConversationMarkdown(first.conversation_id), /# From TypeScript/);
});

test("errors are typed and carry the server's code", async () => {
  const client = await loggedIn();
  await assert.rejects(client.getConversation(crypto.randomUUID()), (error) => {
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.code, "conversation_not_found");
    assert.ok(error.requestId);
    return true;
  });
  await assert.rejects(client.chat("   "), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.deepEqual(error.errors[0].loc, ["body", "message"]);
    return true;
  });
  await assert.rejects(client.listUsers(), PermissionDeniedError);
  const stranger = new MongarsClient({ baseUrl: env("MONGARS_URL") });
  await assert.rejects(stranger.login(env("MONGARS_USERNAME"), "wrong password"), (error) => {
    assert.ok(error instanceof AuthenticationError);
    assert.equal(error.code, "invalid_credentials");
    return true;
  });
});

test("an API key authenticates, and stops working once deleted", async () => {
  const client = await loggedIn();
  const key = await client.createApiKey("node");
  const byKey = new MongarsClient({ baseUrl: env("MONGARS_URL"), apiKey: key.key });
  assert.equal((await byKey.me()).username, env("MONGARS_USERNAME"));
  await client.deleteApiKey(key.id);
  await assert.rejects(byKey.me(), AuthenticationError);
});

test("a dropped stream resumes by itself, every event once", async () => {
  const client = await loggedIn(env("MONGARS_SSE_DROP_URL"));
  const stream = client.chatStream(WORDS);
  const events = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(events.map((event) => event.seq), events.map((_, index) => index + 1));
  assert.equal(events[0].type, "start");
  assert.equal(events.at(-1).type, "done");
  assert.equal(stream.text, `echo: ${WORDS}`);
  assert.equal(stream.resumes, 1);
  assert.equal(stream.result.message.content, `echo: ${WORDS}`);
});

test("the WebSocket session reconnects and resumes a dropped socket", async () => {
  const client = await loggedIn(env("MONGARS_WS_DROP_URL"));
  const session = await client.websocket().connect();
  try {
    assert.equal(session.connected.type, "ws.connected");
    const ref = session.send(WORDS);
    const frames = [];
    const acks = [];
    while (frames.at(-1)?.type !== "chat.done") {
      const frame = await session.recv(10_000);
      if (frame.type.startsWith("chat.")) frames.push(frame);
      else if (frame.type === "ack") acks.push(frame.data);
    }
    // The turn's ack, then the ack of the resume the session sent by itself on reconnecting.
    assert.equal(acks.length, 2);
    assert.equal(acks[0].ref, ref);
    assert.equal(acks[1].stream_id, acks[0].stream_id);
    const seqs = frames.map((frame) => frame.data.seq);
    assert.deepEqual(seqs, seqs.map((_, index) => seqs[0] + index));
    assert.equal(frames.map((frame) => frame.data.text ?? "").join(""), `echo: ${WORDS}`);
    assert.equal(session.reconnects, 1);
    assert.equal(session.following.size, 0);
    const done = await session.chat("and once more");
    assert.equal(done.data.message.content, "echo: and once more");
  } finally {
    session.close();
  }
});

test("a refused ticket is a WebSocketError, never retried", async () => {
  const client = await loggedIn();
  client.createWsTicket = async () => ({ ticket: "forged", ttl: 30 });
  const session = client.websocket();
  await assert.rejects(session.connect(), (error) => {
    assert.ok(error instanceof WebSocketError);
    assert.equal(error.closeCode, 4401);
    assert.equal(error.reason, "ticket_invalid");
    return true;
  });
  assert.equal(session.reconnects, 0);
});

test("rate limits are retried after Retry-After; expired tokens are refreshed once", async () => {
  const seen = [];
  const answers = [
    new Response(JSON.stringify({ detail: "slow down", code: "rate_limited", request_id: "r1" }), {
      status: 429,
      headers: { "retry-after": "0", "content-type": "application/json" },
    }),
    new Response(JSON.stringify({ detail: "expired", code: "token_expired", request_id: "r2" }), { status: 401 }),
    new Response(JSON.stringify({ access_token: "new", token_type: "bearer", expires_in: 900, refresh_token: "r", refresh_expires_in: 9 })),
    new Response(JSON.stringify({ username: "ada" })),
  ];
  const fakeFetch = async (url, init) => {
    seen.push(`${init.method} ${new URL(url).pathname} ${init.headers.authorization ?? "-"}`);
    return answers.shift();
  };
  const client = new MongarsClient({ baseUrl: "http://sdk.test", accessToken: "old", refreshToken: "r0", fetch: fakeFetch });
  assert.equal((await client.me()).username, "ada");
  assert.deepEqual(seen, [
    "GET /api/v1/user/me Bearer old",
    "GET /api/v1/user/me Bearer old",
    "POST /api/v1/auth/refresh -",
    "GET /api/v1/user/me Bearer new",
  ]);
  const quota = async () =>
    new Response(JSON.stringify({ detail: "done for today", code: "quota_exceeded", request_id: "q" }), {
      status: 429,
      headers: { "retry-after": "3600" },
    });
  const limited = new MongarsClient({ baseUrl: "http://sdk.test", apiKey: "mg_x", fetch: quota });
  await assert.rejects(limited.chat("hi"), (error) => {
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.retryAfter, 3600);
    return true;
  });
});
