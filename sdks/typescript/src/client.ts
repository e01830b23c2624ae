/**
 * `MongarsClient`: every native route over `fetch`, with token refresh, bounded retries that
 * honour `Retry-After`, resumable streaming and the WebSocket session. The OpenAI-compatible
 * `/v1/*` routes are for the official `openai` package (`baseURL: <server>/v1`, an API key).
 */
import {
  APIConnectionError,
  APIStatusError,
  RateLimitError,
  StreamError,
  errorFor,
} from "./errors.js";
import { readEvents, type StreamEvent } from "./sse.js";
import type * as T from "./types.js";
import { WebSocketSession, type WebSocketOptions } from "./websocket.js";

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8000`. */
  baseUrl: string;
  apiKey?: string;
  accessToken?: string;
  refreshToken?: string;
  /** Another `fetch` (tests, proxies); the global one by default. */
  fetch?: typeof fetch;
  /** More tries after a refusal worth retrying (429; 502/503/504 for idempotent calls). */
  maxRetries?: number;
  /** Longest `Retry-After` (seconds) waited for; a longer one is raised at once. */
  maxRetryWait?: number;
  /** How many times one streamed answer may be resumed after a dropped connection. */
  maxStreamResumes?: number;
}

interface Call {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | boolean | undefined | null>;
  json?: unknown;
  form?: FormData;
  auth?: boolean;
  okStatuses?: number[];
}

const REFRESH_MARGIN_MS = 30_000;
const IDEMPOTENT = new Set(["GET", "PUT", "DELETE"]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChatOptions {
  conversationId?: string;
  useRag?: boolean;
  collections?: string[];
}

export class MongarsClient {
  readonly baseUrl: string;
  apiKey: string | undefined;
  accessToken: string | undefined;
  refreshToken: string | undefined;
  private expiresAt: number | undefined;
  private refreshing: Promise<void> | undefined;
  private readonly fetchImpl: typeof fetch;
  readonly maxRetries: number;
  readonly maxRetryWait: number;
  readonly maxStreamResumes: number;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.accessToken = options.accessToken;
    this.refreshToken = options.refreshToken;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWait = options.maxRetryWait ?? 60;
    this.maxStreamResumes = options.maxStreamResumes ?? 5;
  }

  // -- sending ----------------------------------------------------------------------------

  /** Send with refresh and retries; the response is unread and successful. */
  async send(call: Call): Promise<Response> {
    const auth = call.auth ?? true;
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      if (auth && this.refreshDue()) await this.refreshOnce(this.accessToken);
      const sentToken = this.accessToken;
      let response: Response;
      try {
        response = await this.fetchImpl(this.url(call.path, call.query), this.init(call, auth));
      } catch (cause) {
        // fetch only says "failed"; retry reads, never a write that may have been received.
        if (IDEMPOTENT.has(call.method) && attempt < this.maxRetries) {
          await sleep(this.backoffMs(attempt));
          continue;
        }
        throw new APIConnectionError(`${call.method} ${call.path}: ${String(cause)}`, { cause });
      }
      if (response.ok || call.okStatuses?.includes(response.status)) return response;
      const error = await errorFor(response);
      if (error.status === 401 && error.code === "token_expired" && auth && !refreshed && this.canRefresh()) {
        refreshed = true;
        await this.refreshOnce(sentToken);
        attempt--;
        continue;
      }
      const wait = this.retryDelayMs(attempt, error, IDEMPOTENT.has(call.method));
      if (wait === null) throw error;
      await sleep(wait);
    }
  }

  private async json<R>(call: Call): Promise<R> {
    return (await (await this.send(call)).json()) as R;
  }

  private async nothing(call: Call): Promise<void> {
    await (await this.send(call)).arrayBuffer();
  }

  private url(path: string, query?: Call["query"]): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  private init(call: Call, auth: boolean): RequestInit {
    const headers: Record<string, string> = { accept: "application/json" };
    const bearer = this.apiKey ?? this.accessToken;
    if (auth && bearer) headers["authorization"] = `Bearer ${bearer}`;
    let body: BodyInit | undefined;
    if (call.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(call.json);
    } else if (call.form) {
      body = call.form;
    }
    return { method: call.method, headers, body };
  }

  private retryDelayMs(attempt: number, error: APIStatusError, idempotent: boolean): number | null {
    if (attempt >= this.maxRetries) return null;
    const retriable = error.status === 429 || (idempotent && [502, 503, 504].includes(error.status));
    if (!retriable) return null;
    if (error instanceof RateLimitError && error.code === "quota_exceeded") return null;
    if (error.retryAfter !== null) {
      return error.retryAfter <= this.maxRetryWait ? error.retryAfter * 1000 : null;
    }
    return this.backoffMs(attempt);
  }

  backoffMs(attempt: number): number {
    return Math.min(500 * 2 ** attempt, 8000) * (0.5 + Math.random() / 2);
  }

  // -- tokens -----------------------------------------------------------------------------

  private refreshDue(): boolean {
    if (this.apiKey || !this.refreshToken || this.expiresAt === undefined) return false;
    return Date.now() >= this.expiresAt - REFRESH_MARGIN_MS;
  }

  private canRefresh(): boolean {
    return !this.apiKey && !!this.refreshToken;
  }

  /** One refresh at a time; callers that saw the same stale token share it. */
  private async refreshOnce(staleToken: string | undefined): Promise<void> {
    if (this.refreshing) return this.refreshing;
    if (this.accessToken !== staleToken) return;
    this.refreshing = this.refresh().then(() => undefined);
    try {
      await this.refreshing;
    } finally {
      this.refreshing = undefined;
    }
  }

  private store(tokens: T.TokenResponse): T.TokenResponse {
    this.accessToken = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    this.expiresAt = Date.now() + tokens.expires_in * 1000;
    return tokens;
  }

  // -- health -----------------------------------------------------------------------------

  health(): Promise<T.Liveness> {
    return this.json({ method: "GET", path: "/healthz", auth: false });
  }

  /** Readiness, a `not_ready` report (the server's 503) included. */
  ready(): Promise<T.Readiness> {
    return this.json({ method: "GET", path: "/ready", auth: false, okStatuses: [503] });
  }

  // -- auth and the caller's account ------------------------------------------------------

  async login(username: string, password: string): Promise<T.TokenResponse> {
    const json = { username, password };
    return this.store(await this.json({ method: "POST", path: "/api/v1/auth/login", json, auth: false }));
  }

  async refresh(): Promise<T.TokenResponse> {
    if (!this.refreshToken) throw new Error("no refresh token: log in first");
    const json = { refresh_token: this.refreshToken };
    return this.store(await this.json({ method: "POST", path: "/api/v1/auth/refresh", json, auth: false }));
  }

  async logout(): Promise<void> {
    await this.nothing({ method: "POST", path: "/api/v1/auth/logout" });
    this.accessToken = this.refreshToken = this.expiresAt = undefined;
  }

  register(username: string, password: string): Promise<T.User> {
    const json = { username, password };
    return this.json({ method: "POST", path: "/api/v1/user/register", json, auth: false });
  }

  me(): Promise<T.User> {
    return this.json({ method: "GET", path: "/api/v1/user/me" });
  }

  async changePassword(oldPassword: string, newPassword: string): Promise<T.TokenResponse> {
    const json = { old_password: oldPassword, new_password: newPassword };
    const tokens = await this.json<T.TokenResponse>({ method: "POST", path: "/api/v1/user/change-password", json });
    return this.apiKey ? tokens : this.store(tokens);
  }

  createWsTicket(): Promise<T.Ticket> {
    return this.json({ method: "POST", path: "/api/v1/auth/ws/ticket" });
  }

  // -- API keys ---------------------------------------------------------------------------

  createApiKey(name: string, expiresInDays?: number): Promise<T.ApiKeyCreated> {
    const json = { name, expires_in_days: expiresInDays ?? null };
    return this.json({ method: "POST", path: "/api/v1/api-keys", json });
  }

  listApiKeys(): Promise<T.ApiKey[]> {
    return this.json({ method: "GET", path: "/api/v1/api-keys" });
  }

  deleteApiKey(keyId: string): Promise<void> {
    return this.nothing({ method: "DELETE", path: `/api/v1/api-keys/${keyId}` });
  }

  // -- chat -------------------------------------------------------------------------------

  chat(message: string, options: ChatOptions = {}): Promise<T.ChatResponse> {
    return this.json({ method: "POST", path: "/api/v1/conversation/chat", json: chatBody(message, options) });
  }

  /** One turn, streamed: `for await (const event of client.chatStream("Hi"))`. A dropped
   * connection is resumed by itself; an `error` event throws `StreamError`. */
  chatStream(message: string, options: ChatOptions = {}): ChatStream {
    return new ChatStream(this, {
      method: "POST",
      path: "/api/v1/conversation/chat/stream",
      json: chatBody(message, options),
    });
  }

  /** Follow a stream from after event `after`. */
  resumeStream(streamId: string, after = 0): ChatStream {
    const stream = new ChatStream(this, resumeCall(streamId, after));
    stream.streamId = streamId;
    stream.lastSeq = after;
    return stream;
  }

  cancel(conversationId: string): Promise<T.CancelResponse> {
    return this.json({ method: "POST", path: `/api/v1/conversations/${conversationId}/cancel` });
  }

  // -- history and conversations ----------------------------------------------------------

  /** One page of turns, newest first; `nextUrl` (from `Link: rel="next"`) leads on. */
  async history(
    options: { limit?: number; before?: number; conversationId?: string } = {},
  ): Promise<{ items: T.HistoryItem[]; nextUrl: string | null }> {
    const query = { limit: options.limit, before: options.before, conversation_id: options.conversationId };
    return this.historyPage({ method: "GET", path: "/api/v1/conversation/history", query });
  }

  /** Every turn, newest first, following `Link: rel="next"` page after page. */
  async *iterHistory(options: { pageSize?: number; conversationId?: string } = {}): AsyncGenerator<T.HistoryItem> {
    let page = await this.history({ limit: options.pageSize ?? 50, conversationId: options.conversationId });
    for (;;) {
      yield* page.items;
      if (!page.nextUrl) return;
      page = await this.historyPage({ method: "GET", path: page.nextUrl });
    }
  }

  private async historyPage(call: Call): Promise<{ items: T.HistoryItem[]; nextUrl: string | null }> {
    const response = await this.send(call);
    const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(response.headers.get("link") ?? "");
    return { items: (await response.json()) as T.HistoryItem[], nextUrl: next?.[1] ?? null };
  }

  listConversations(limit = 20, offset = 0): Promise<T.ConversationPage> {
    return this.json({ method: "GET", path: "/api/v1/conversations", query: { limit, offset } });
  }

  getConversation(conversationId: string): Promise<T.ConversationDetail> {
    return this.json({ method: "GET", path: `/api/v1/conversations/${conversationId}` });
  }

  renameConversation(conversationId: string, title: string): Promise<T.Conversation> {
    return this.json({ method: "PATCH", path: `/api/v1/conversations/${conversationId}`, json: { title } });
  }

  deleteConversation(conversationId: string): Promise<void> {
    return this.nothing({ method: "DELETE", path: `/api/v1/conversations/${conversationId}` });
  }

  exportConversation(conversationId: string): Promise<T.ConversationExport> {
    const query = { format: "json" };
    return this.json({ method: "GET", path: `/api/v1/conversations/${conversationId}/export`, query });
  }

  async exportConversationMarkdown(conversationId: string): Promise<string> {
    const query = { format: "markdown" };
    return (await this.send({ method: "GET", path: `/api/v1/conversations/${conversationId}/export`, query })).text();
  }

  searchConversations(query: string, limit = 20): Promise<T.SearchHit[]> {
    return this.json({ method: "GET", path: "/api/v1/conversations/search", query: { q: query, limit } });
  }

  // -- WebSocket --------------------------------------------------------------------------

  /** A session on the real-time channel; `await session.connect()` first. */
  websocket(options: WebSocketOptions = {}): WebSocketSession {
    return new WebSocketSession(
      () => this.createWsTicket(),
      this.baseUrl.replace(/^http/, "ws") + "/ws/chat/",
      options,
    );
  }

  // -- RAG --------------------------------------------------------------------------------

  uploadDocument(
    file: Blob | Uint8Array | string,
    filename: string,
    options: { collection?: string; shared?: boolean; background?: boolean } = {},
  ): Promise<T.IngestResponse | T.IngestJob> {
    const form = new FormData();
    const blob = file instanceof Blob ? file : new Blob([file as BlobPart]);
    form.set("file", blob, filename);
    if (options.collection) form.set("collection", options.collection);
    if (options.shared) form.set("shared", "true");
    if (options.background !== undefined) form.set("background", String(options.background));
    return this.json({ method: "POST", path: "/api/v1/rag/documents", form });
  }

  getIngestJob(jobId: string): Promise<T.IngestJob> {
    return this.json({ method: "GET", path: `/api/v1/rag/jobs/${jobId}` });
  }

  listDocuments(options: { collection?: string; limit?: number; offset?: number } = {}): Promise<T.Document[]> {
    return this.json({ method: "GET", path: "/api/v1/rag/documents", query: options });
  }

  deleteDocument(documentId: string): Promise<void> {
    return this.nothing({ method: "DELETE", path: `/api/v1/rag/documents/${documentId}` });
  }

  searchDocuments(query: string, options: { limit?: number; collections?: string[] } = {}): Promise<T.SearchResponse> {
    return this.json({ method: "POST", path: "/api/v1/rag/search", json: { query, ...options } });
  }

  ragContext(query: string, options: { maxResults?: number; repositories?: string[] } = {}): Promise<T.RagContext> {
    const json = { query, max_results: options.maxResults ?? 5, repositories: options.repositories ?? null };
    return this.json({ method: "POST", path: "/api/v1/review/rag-context", json });
  }

  // -- models, usage, users (admin) -------------------------------------------------------

  listModels(): Promise<T.ModelsResponse> {
    return this.json({ method: "GET", path: "/api/v1/models" });
  }

  setModelRole(role: string, update: T.RoleUpdate): Promise<T.ModelsResponse> {
    return this.json({ method: "PUT", path: `/api/v1/models/roles/${role}`, json: update });
  }

  provisionModels(request: Partial<T.ProvisionRequest> = {}): Promise<T.ProvisionJob> {
    return this.json({ method: "POST", path: "/api/v1/models/provision", json: request });
  }

  getProvisionJob(jobId: string): Promise<T.ProvisionJob> {
    return this.json({ method: "GET", path: `/api/v1/models/jobs/${jobId}` });
  }

  myUsage(): Promise<T.Usage> {
    return this.json({ method: "GET", path: "/api/v1/user/me/usage" });
  }

  userUsage(username: string): Promise<T.UserUsage> {
    return this.json({ method: "GET", path: `/api/v1/users/${username}/usage` });
  }

  setUserQuota(username: string, dailyMessages: number | null, dailyTokens: number | null): Promise<T.UserUsage> {
    const json = { daily_messages: dailyMessages, daily_tokens: dailyTokens };
    return this.json({ method: "PUT", path: `/api/v1/users/${username}/quota`, json });
  }

  listUsers(limit = 50, offset = 0): Promise<T.UserPage> {
    return this.json({ method: "GET", path: "/api/v1/users", query: { limit, offset } });
  }

  async listUsernames(): Promise<string[]> {
    return (await this.json<{ users: string[] }>({ method: "GET", path: "/api/v1/user/list" })).users;
  }

  updateUser(username: string, changes: { disabled?: boolean; is_admin?: boolean }): Promise<T.User> {
    return this.json({ method: "PATCH", path: `/api/v1/users/${username}`, json: changes });
  }

  deleteUser(username: string): Promise<void> {
    return this.nothing({ method: "DELETE", path: `/api/v1/users/${username}` });
  }
}

function chatBody(message: string, options: ChatOptions): T.ChatRequest {
  return {
    message,
    conversation_id: options.conversationId ?? null,
    use_rag: options.useRag ?? false,
    collections: options.collections ?? null,
  };
}

function resumeCall(streamId: string, after: number): Call {
  return { method: "GET", path: `/api/v1/streams/${streamId}`, query: { after } };
}

/** A streamed answer. Iterate it once; `text`, `result` and `streamId` fill in as it goes. */
export class ChatStream implements AsyncIterable<StreamEvent> {
  streamId: string | null = null;
  lastSeq = 0;
  resumes = 0;
  text = "";
  /** The stored answer (the `done` event's data). */
  result: Record<string, unknown> | null = null;

  constructor(
    private readonly client: MongarsClient,
    private readonly firstCall: Call,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamEvent> {
    let call = this.firstCall;
    for (;;) {
      let cause: unknown;
      try {
        const response = await this.client.send(call);
        this.streamId ??= response.headers.get("x-stream-id");
        if (!response.body) throw new APIConnectionError("the stream has no body");
        for await (const event of readEvents(response.body)) {
          if (event.seq && event.seq <= this.lastSeq) continue; // already delivered
          this.streamId ??= event.streamId;
          this.lastSeq = event.seq || this.lastSeq;
          if (event.type === "error") {
            const { code, detail } = event.data as { code?: string; detail?: string };
            throw new StreamError(code ?? "stream_error", detail ?? "", this.streamId);
          }
          if (event.type === "delta") this.text += String(event.data["text"] ?? "");
          if (event.type === "done") this.result = event.data;
          yield event;
          if (event.type === "done") return;
        }
      } catch (error) {
        if (error instanceof StreamError || error instanceof APIStatusError) throw error;
        cause = error;
      }
      // The connection ended before `done`: resume after the last event seen.
      if (this.streamId === null) throw new APIConnectionError("the stream could not be started", { cause });
      if (++this.resumes > this.client.maxStreamResumes) {
        throw new APIConnectionError(`stream ${this.streamId} dropped ${this.resumes} times; giving up`, { cause });
      }
      await sleep(this.client.backoffMs(this.resumes - 1));
      call = resumeCall(this.streamId, this.lastSeq);
    }
  }

  /** Read the whole stream; the stored answer. */
  async untilDone(): Promise<Record<string, unknown> | null> {
    for await (const _event of this) {
      // each event updates text and result
    }
    return this.result;
  }
}
