// A reference client: chat with monGARS from the terminal, answers streamed token by token.
//
//   MONGARS_URL=http://127.0.0.1:8000 MONGARS_USERNAME=ada MONGARS_PASSWORD=... node chat.js
//   MONGARS_API_KEY=mg_... node chat.js --ws        (stream over the WebSocket channel)
//
// One message per line on stdin; /new starts a new conversation, /quit ends.
import { createInterface } from "node:readline";
import { argv, env, exit, stderr, stdin, stdout } from "node:process";

import { MongarsClient, MongarsError, type WebSocketSession } from "@mongars/sdk";

const client = new MongarsClient({ baseUrl: env["MONGARS_URL"] ?? "http://127.0.0.1:8000", apiKey: env["MONGARS_API_KEY"] });
if (!client.apiKey) {
  const [username, password] = [env["MONGARS_USERNAME"], env["MONGARS_PASSWORD"]];
  if (!username || !password) {
    stderr.write("set MONGARS_USERNAME and MONGARS_PASSWORD, or MONGARS_API_KEY\n");
    exit(2);
  }
  await client.login(username, password);
}

const session: WebSocketSession | null = argv.includes("--ws") ? await client.websocket().connect() : null;
let conversationId: string | undefined;

async function overSse(message: string): Promise<void> {
  const stream = client.chatStream(message, { conversationId });
  for await (const event of stream) {
    if (event.type === "delta") stdout.write(String(event.data["text"]));
  }
  conversationId = String(stream.result?.["conversation_id"] ?? conversationId);
}

async function overWebSocket(socket: WebSocketSession, message: string): Promise<void> {
  const ref = socket.send(message, { conversationId });
  let streamId: unknown = null;
  for (;;) {
    const frame = await socket.recv(120_000);
    if (frame.type === "ack" && frame.data["ref"] === ref) streamId = frame.data["stream_id"];
    else if (streamId !== null && frame.data["stream_id"] === streamId) {
      if (frame.type === "chat.delta") stdout.write(String(frame.data["text"]));
      if (frame.type === "chat.done") {
        conversationId = String(frame.data["conversation_id"]);
        return;
      }
      if (frame.type === "chat.error") throw new MongarsError(String(frame.data["detail"]));
    }
  }
}

for await (const line of createInterface({ input: stdin })) {
  const message = line.trim();
  if (!message) continue;
  if (message === "/quit") break;
  if (message === "/new") {
    conversationId = undefined;
    continue;
  }
  try {
    await (session ? overWebSocket(session, message) : overSse(message));
    stdout.write("\n");
  } catch (error) {
    if (!(error instanceof MongarsError)) throw error;
    stderr.write(`error: ${error.message}\n`);
  }
}
session?.close();
