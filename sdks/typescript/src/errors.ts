/**
 * The error tree: one class per HTTP status, each carrying the server's envelope
 * `{detail, code, request_id}`. `StreamError` is an `error` event in a streamed answer,
 * `WebSocketError` a refused or closed socket (its `closeCode`).
 */

export class MongarsError extends Error {
  override name = "MongarsError";
}

export class APIConnectionError extends MongarsError {
  override name = "APIConnectionError";
}

export interface ErrorBody {
  detail?: unknown;
  code?: string;
  request_id?: string | null;
}

export class APIStatusError extends MongarsError {
  override name = "APIStatusError";
  readonly status: number;
  readonly code: string;
  readonly detail: unknown;
  readonly requestId: string | null;
  /** Seconds the server asks to wait (`Retry-After`), when it says. */
  readonly retryAfter: number | null;

  constructor(status: number, body: ErrorBody, headers: Headers) {
    const detail = body.detail ?? `HTTP ${status}`;
    const code = body.code ?? "http_error";
    const requestId = body.request_id ?? headers.get("x-request-id");
    super(`${status} ${code}: ${typeof detail === "string" ? detail : "invalid request"} (request id ${requestId})`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.requestId = requestId;
    this.retryAfter = parseRetryAfter(headers.get("retry-after"));
  }
}

export class BadRequestError extends APIStatusError { override name = "BadRequestError"; }
export class AuthenticationError extends APIStatusError { override name = "AuthenticationError"; }
export class PermissionDeniedError extends APIStatusError { override name = "PermissionDeniedError"; }
export class NotFoundError extends APIStatusError { override name = "NotFoundError"; }
export class ConflictError extends APIStatusError { override name = "ConflictError"; }
export class GoneError extends APIStatusError { override name = "GoneError"; }
export class PayloadTooLargeError extends APIStatusError { override name = "PayloadTooLargeError"; }
export class UnsupportedMediaTypeError extends APIStatusError { override name = "UnsupportedMediaTypeError"; }
/** 422: `errors` lists the server's `{type, loc, msg}` field errors. */
export class ValidationError extends APIStatusError {
  override name = "ValidationError";
  get errors(): Array<{ type: string; loc: Array<string | number>; msg: string }> {
    return Array.isArray(this.detail) ? this.detail : [];
  }
}
export class RateLimitError extends APIStatusError { override name = "RateLimitError"; }
export class InternalServerError extends APIStatusError { override name = "InternalServerError"; }
export class BadGatewayError extends InternalServerError { override name = "BadGatewayError"; }
export class ServiceUnavailableError extends InternalServerError { override name = "ServiceUnavailableError"; }
export class GatewayTimeoutError extends InternalServerError { override name = "GatewayTimeoutError"; }

export class StreamError extends MongarsError {
  override name = "StreamError";
  constructor(readonly code: string, readonly detail: string, readonly streamId: string | null) {
    super(`${code}: ${detail}`);
  }
}

/**
 * Close codes: 4401 bad, expired or used ticket; 4403 forbidden origin; 4400 forbidden host;
 * 4503 channel off; 4408 heartbeat timeout; 1013 send queue overflowed.
 */
export class WebSocketError extends MongarsError {
  override name = "WebSocketError";
  constructor(readonly closeCode: number | null, readonly reason: string) {
    super(`WebSocket closed (${closeCode}): ${reason || "no reason given"}`);
  }
}

const BY_STATUS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  410: GoneError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: ValidationError,
  429: RateLimitError,
  502: BadGatewayError,
  503: ServiceUnavailableError,
  504: GatewayTimeoutError,
};

export async function errorFor(response: Response): Promise<APIStatusError> {
  const text = await response.text();
  let body: ErrorBody = { detail: text || response.statusText };
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === "object") body = parsed as ErrorBody;
  } catch {
    // not the envelope (a proxy's page, say): keep the text as the detail
  }
  const cls = BY_STATUS[response.status] ?? (response.status >= 500 ? InternalServerError : APIStatusError);
  return new cls(response.status, body, response.headers);
}

export function parseRetryAfter(value: string | null): number | null {
  if (value === null) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}
