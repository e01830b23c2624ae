/**
 * @mongars/sdk: a typed client for the monGARS gateway. Types come from the server's
 * openapi.json (`schema.ts`, generated, never edited); the client is written by hand.
 */
export { MongarsClient, ChatStream, type ChatOptions, type ClientOptions } from "./client.js";
export * from "./errors.js";
export type { StreamEvent } from "./sse.js";
export type * from "./types.js";
export type { components, operations, paths } from "./schema.js";
export {
  WebSocketSession,
  type Frame,
  type WebSocketConstructor,
  type WebSocketLike,
  type WebSocketOptions,
} from "./websocket.js";
