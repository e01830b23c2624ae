/**
 * A session on the real-time channel (`/ws/chat/`), in browsers and in Node 20+ (which has no
 * global WebSocket unless flagged: the optional `ws` package is used there).
 *
 * The session gets a single-use ticket, connects, answers pings and tracks each stream it
 * follows (the last `seq` seen). If the socket drops it reconnects with a fresh ticket and sends
 * `resume` for each unfinished stream: `recv()` carries on with the next event, none twice.
 * Refusals (4400, 4401, 4403, 4503) are never retried; they throw `WebSocketError`.
 */
import { StreamError, WebSocketError } from "./errors.js";
import type { Ticket } from "./types.js";

export interface Frame {
  id?: string | null;
  type: string;
  ts?: string | null;
  data: Record<string, unknown>;
}

/** What the session needs of a WebSocket: the browser's API, which `ws` also implements. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WebSocketOptions {
  /** Reconnect and resume unfinished streams after a dropped socket (default true). */
  autoResume?: boolean;
  maxReconnects?: number;
  /** A WebSocket class; default: the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
}

const REFUSALS = new Set([4400, 4401, 4403, 4503]);
const STREAM_END = new Set(["chat.done", "chat.error"]);

async function webSocketClass(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  try {
    const { WebSocket: NodeWebSocket } = await import("ws");
    // monGARS serves without per-message deflate (it costs memory per socket): do not offer it.
    return class extends NodeWebSocket {
      constructor(url: string) {
        super(url, { perMessageDeflate: false });
      }
    } as unknown as WebSocketConstructor;
  } catch {
    throw new WebSocketError(null, "no WebSocket here: install the `ws` package (Node 20)");
  }
}

type Incoming = { frame: Frame } | { closed: WebSocketError };

export class WebSocketSession implements AsyncIterable<Frame> {
  /** The `ws.connected` frame of the current connection. */
  connected: Frame | null = null;
  /** The `history.snapshot` turns sent on connecting, newest first. */
  history: unknown[] = [];
  reconnects = 0;
  /** Unfinished streams and the last `seq` seen of each. */
  readonly following = new Map<string, number>();
  private socket: WebSocketLike | null = null;
  private inbox: Incoming[] = [];
  private wake: (() => void) | null = null;
  private backlog: Frame[] = [];
  private closing = false;
  private nextId = 1;
  private readonly autoResume: boolean;
  private readonly maxReconnects: number;

  constructor(
    private readonly getTicket: () => Promise<Ticket>,
    private readonly url: string,
    private readonly options: WebSocketOptions,
  ) {
    this.autoResume = options.autoResume ?? true;
    this.maxReconnects = options.maxReconnects ?? 3;
  }

  async connect(): Promise<this> {
    const WebSocketClass = await webSocketClass(this.options.WebSocket);
    const { ticket } = await this.getTicket();
    const socket = new WebSocketClass(`${this.url}?t=${encodeURIComponent(ticket)}`);
    this.inbox = [];
    socket.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data : new TextDecoder().decode(event.data as ArrayBuffer);
      this.deliver({ frame: JSON.parse(text) as Frame });
    };
    socket.onclose = (event) => this.deliver({ closed: new WebSocketError(event.code, event.reason) });
    socket.onerror = () => {
      // a close event always follows, with the code
    };
    this.socket = socket;
    this.connected = await this.nextRaw();
    const snapshot = await this.nextRaw();
    this.history = (snapshot.data["turns"] as unknown[] | undefined) ?? [];
    return this;
  }

  private deliver(item: Incoming): void {
    this.inbox.push(item);
    this.wake?.();
  }

  /** The next frame as it came, or throw the close. */
  private async nextRaw(timeoutMs?: number): Promise<Frame> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      while (this.inbox.length === 0) {
        await new Promise<void>((resolve, reject) => {
          this.wake = resolve;
          if (timeoutMs !== undefined) {
            timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
          }
        });
        clearTimeout(timer);
      }
    } finally {
      clearTimeout(timer);
      this.wake = null;
    }
    const item = this.inbox.shift()!;
    if ("closed" in item) {
      this.inbox.unshift(item); // stays closed
      throw item.closed;
    }
    return item.frame;
  }

  sendFrame(type: string, data: Record<string, unknown> = {}): string {
    if (!this.socket) throw new WebSocketError(null, "not connected");
    const id = `c${this.nextId++}`;
    this.socket.send(JSON.stringify({ id, type, data }));
    return id;
  }

  /** Start a turn; the frame id its `ack` names as `ref`. */
  send(message: string, options: { conversationId?: string; useRag?: boolean; collections?: string[] } = {}): string {
    const data: Record<string, unknown> = { message };
    if (options.conversationId) data["conversation_id"] = options.conversationId;
    if (options.useRag) data["use_rag"] = true;
    if (options.collections) data["collections"] = options.collections;
    return this.sendFrame("chat.send", data);
  }

  cancel(target: { conversationId?: string; streamId?: string }): string {
    const data: Record<string, unknown> = {};
    if (target.conversationId) data["conversation_id"] = target.conversationId;
    if (target.streamId) data["stream_id"] = target.streamId;
    return this.sendFrame("chat.cancel", data);
  }

  /** Follow `streamId` from after `afterSeq` (default: the last event seen). */
  resume(streamId: string, afterSeq?: number): string {
    return this.sendFrame("resume", { stream_id: streamId, after_seq: afterSeq ?? this.following.get(streamId) ?? 0 });
  }

  /** The next frame: pings answered, events already seen skipped, drops recovered. */
  async recv(timeoutMs?: number): Promise<Frame> {
    const held = this.backlog.shift();
    if (held) return held;
    for (;;) {
      let frame: Frame;
      try {
        frame = await this.nextRaw(timeoutMs);
      } catch (error) {
        if (!(error instanceof WebSocketError)) throw error;
        await this.recover(error);
        continue;
      }
      if (frame.type === "ping") {
        this.sendFrame("pong");
        continue;
      }
      if (this.track(frame)) return frame;
    }
  }

  private track(frame: Frame): boolean {
    const streamId = frame.data["stream_id"] as string | undefined;
    const seq = frame.data["seq"] as number | undefined;
    if (frame.type === "ack" && streamId !== undefined) {
      if (!this.following.has(streamId)) this.following.set(streamId, Number(frame.data["after_seq"] ?? 0));
    } else if (frame.type.startsWith("chat.") && streamId !== undefined && seq !== undefined) {
      if (seq <= (this.following.get(streamId) ?? 0)) return false;
      this.following.set(streamId, seq);
      if (STREAM_END.has(frame.type)) this.following.delete(streamId);
    }
    return true;
  }

  private async recover(closed: WebSocketError): Promise<void> {
    const refused = closed.closeCode !== null && REFUSALS.has(closed.closeCode);
    if (this.closing || refused || !this.autoResume || this.reconnects >= this.maxReconnects) throw closed;
    this.reconnects++;
    this.socket = null;
    await this.connect();
    for (const [streamId, after] of this.following) {
      this.sendFrame("resume", { stream_id: streamId, after_seq: after });
    }
  }

  /** Send a turn and wait for its `chat.done` frame (`StreamError` on `chat.error`); frames
   * about anything else are kept for later `recv()` calls. */
  async chat(message: string, options: { conversationId?: string; useRag?: boolean } = {}, timeoutMs = 120_000): Promise<Frame> {
    const ref = this.send(message, options);
    let streamId: string | null = null;
    const held: Frame[] = [];
    try {
      for (;;) {
        const frame = await this.recv(timeoutMs);
        const data = frame.data;
        if (frame.type === "ack" && data["ref"] === ref) {
          streamId = String(data["stream_id"]);
        } else if (frame.type === "chat.error" && (data["ref"] === ref || (streamId && data["stream_id"] === streamId))) {
          throw new StreamError(String(data["code"]), String(data["detail"] ?? ""), streamId);
        } else if (streamId && data["stream_id"] === streamId) {
          if (frame.type === "chat.done") return frame;
        } else {
          held.push(frame);
        }
      }
    } finally {
      this.backlog.push(...held);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Frame> {
    for (;;) {
      try {
        yield await this.recv();
      } catch (error) {
        if (error instanceof WebSocketError && (this.closing || error.closeCode === 1000)) return;
        throw error;
      }
    }
  }

  close(): void {
    this.closing = true;
    if (this.socket) {
      try {
        this.sendFrame("close");
      } catch {
        // already closed
      }
      this.socket.close(1000);
      this.socket = null;
    }
  }
}
