// The WebSocket to the API: a fresh single-use ticket from the page's own server for every
// connection (the page never sees the API's tokens), JSON frames {id, type, ts, data}.

let counter = 0;
const nextId = () => `web-${Date.now().toString(36)}-${(counter += 1)}`;

export class Channel {
  constructor({ ticketUrl, csrfToken, onFrame, onDrop }) {
    this.ticketUrl = ticketUrl;
    this.csrfToken = csrfToken;
    this.onFrame = onFrame;
    this.onDrop = onDrop;
    this.socket = null;
    this.opening = null;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  async connect() {
    if (this.open) return;
    if (this.opening) return this.opening;
    this.opening = this.#connect().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  async #connect() {
    const response = await fetch(this.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": this.csrfToken, Accept: "application/json" },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.detail || "Could not open the live connection.");
      error.status = response.status;
      error.login = body.login_url;
      throw error;
    }
    const base =
      body.ws_url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/chat/`;
    const socket = new WebSocket(`${base}?t=${encodeURIComponent(body.ticket)}`);
    await new Promise((resolve, reject) => {
      socket.addEventListener("message", function greeted(event) {
        const frame = JSON.parse(event.data);
        if (frame.type === "ws.connected") {
          socket.removeEventListener("message", greeted);
          resolve();
        }
      });
      socket.addEventListener("close", (event) => reject(new Error(event.reason || "closed")), {
        once: true,
      });
    });
    socket.addEventListener("message", (event) => this.#receive(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (this.socket === socket) {
        this.socket = null;
        this.onDrop();
      }
    });
    this.socket = socket;
  }

  #receive(frame) {
    if (frame.type === "ping") {
      this.send("pong", {});
      return;
    }
    this.onFrame(frame);
  }

  send(type, data) {
    const id = nextId();
    this.socket.send(JSON.stringify({ id, type, ts: new Date().toISOString(), data }));
    return id;
  }

  // For tests and for leaving the page: drop the socket as a network failure would.
  drop() {
    if (this.socket) this.socket.close(4000, "dropped");
  }
}
