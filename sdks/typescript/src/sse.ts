/** Server-Sent Events: the HTML standard's parsing rules over a fetch body. */

export interface StreamEvent {
  streamId: string;
  seq: number;
  type: "start" | "delta" | "done" | "error" | string;
  data: Record<string, unknown>;
}

export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamEvent> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  let fields: Record<string, string[]> = {};
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          const event = toEvent(fields);
          fields = {};
          if (event) yield event;
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          (fields[name] ??= []).push(value);
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function toEvent(fields: Record<string, string[]>): StreamEvent | null {
  const data = fields["data"];
  if (!data) return null;
  const id = fields["id"]?.at(-1) ?? "";
  const colon = id.lastIndexOf(":");
  return {
    streamId: colon < 0 ? "" : id.slice(0, colon),
    seq: Number(id.slice(colon + 1)) || 0,
    type: fields["event"]?.at(-1) ?? "message",
    data: JSON.parse(data.join("\n")) as Record<string, unknown>,
  };
}
