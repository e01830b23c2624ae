// Progressive enhancement of the chat page: without this script the form posts and the server
// answers after the whole turn; with it the answer streams over the WebSocket, can be stopped,
// and survives a dropped connection or a reload (the stream id is kept in sessionStorage).
import { Channel } from "./channel.js";
import { renderMarkdown } from "./render.js";

const STORAGE_KEY = "mongars.stream";
const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000];

const root = document.getElementById("chat");
if (root) {
  enhance(root);
}

function enhance(root) {
  const form = root.querySelector("#send-form");
  const textarea = form.querySelector("textarea[name=message]");
  const sendButton = form.querySelector("button[type=submit]");
  const stopButton = root.querySelector("#stop");
  const list = root.querySelector("#messages");
  const announcer = root.querySelector("#announcer");
  const status = root.querySelector("#chat-status");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  let conversationId = root.dataset.conversationId || null;
  let active = null; // {streamId, messageId, seq, text, element}
  let retries = 0;
  let renderPending = false;

  const channel = new Channel({
    ticketUrl: root.dataset.ticketUrl,
    csrfToken,
    onFrame: handleFrame,
    onDrop: () => {
      if (active) scheduleResume();
    },
  });
  // Exposed for the browser tests, which cut the connection as a network failure would.
  window.mongarsChat = { channel };

  form.addEventListener("submit", (event) => {
    const text = textarea.value;
    if (!text.trim() || active) {
      event.preventDefault();
      return;
    }
    event.preventDefault();
    send(text).catch((error) => {
      if (error.status === 401 && error.login) {
        location.assign(error.login);
        return;
      }
      // No live connection: fall back to the plain form, which works without JavaScript.
      form.submit();
    });
  });
  root.querySelector("#enter-hint").hidden = false;
  textarea.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line (the Send button works from the keyboard too).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => {
    if (active && active.streamId && channel.open) {
      channel.send("chat.cancel", { stream_id: active.streamId });
      say("Stopping the answer…");
    }
  });

  resumeAfterReload();

  async function send(text) {
    await channel.connect();
    const question = appendMessage("user", null);
    question.querySelector(".content").textContent = text;
    const answer = appendMessage("assistant", null);
    startStream({ element: answer, streamId: null, messageId: null });
    textarea.value = "";
    const frameId = channel.send("chat.send", {
      message: text,
      ...(conversationId ? { conversation_id: conversationId } : {}),
    });
    active.frameId = frameId;
    active.question = question;
    active.draft = text;
  }

  function handleFrame(frame) {
    const data = frame.data || {};
    switch (frame.type) {
      case "ack":
        if (active && data.ref === active.frameId && data.stream_id) {
          accepted(data);
        } else if (active && data.ref === active.resumeId) {
          retries = 0;
        }
        break;
      case "chat.delta":
        if (active && data.stream_id === active.streamId && data.seq > active.seq) {
          active.seq = data.seq;
          active.text += data.text;
          remember();
          scheduleRender();
        }
        break;
      case "chat.done":
        if (active && data.stream_id === active.streamId) finish(data);
        break;
      case "chat.error":
        if (active && (data.stream_id === active.streamId || data.ref === active.frameId)) {
          fail(data);
        }
        break;
      case "error":
        if (active && data.ref === active.resumeId) {
          // The stream is gone (finished long ago, or evicted): the stored answer is on the page
          // after a reload.
          forget();
          setBusy(false);
          showError("This answer can no longer be followed live; reload the page to see it.");
        }
        break;
      default:
        break;
    }
  }

  function accepted(data) {
    active.streamId = data.stream_id;
    active.messageId = data.message_id;
    active.element.dataset.messageId = data.message_id;
    active.question.dataset.messageId = data.user_message_id;
    if (!conversationId) {
      conversationId = data.conversation_id;
      root.dataset.conversationId = conversationId;
      const url = root.dataset.conversationUrlTemplate.replace("00000000-0000-0000-0000-000000000000", conversationId);
      history.replaceState(null, "", url);
      form.action = url;
    }
    remember();
  }

  function startStream(fields) {
    active = { seq: 0, text: "", ...fields };
    setBusy(true);
    say("monGARS is answering…");
  }

  function finish(data) {
    const message = data.message || {};
    if (typeof message.content === "string") active.text = message.content;
    renderNow();
    const stopped = data.finish_reason === "cancelled";
    active.element.dataset.status = stopped ? "incomplete" : message.status || "complete";
    if (stopped) addNote(active.element, "Stopped.");
    const text = active.text;
    forget();
    setBusy(false);
    say(stopped ? `Answer stopped: ${text}` : `monGARS answered: ${text}`);
    textarea.focus();
  }

  function fail(data) {
    const element = active.element;
    const before = !active.streamId;
    if (before) {
      // Refused before it started (rate limited, too long…): nothing was stored.
      element.remove();
      active.question.remove();
      textarea.value = active.draft;
    } else {
      renderNow();
      element.dataset.status = "error";
    }
    forget();
    setBusy(false);
    showError(describe(data));
  }

  function describe(data) {
    const wait = data.retry_after ? ` Try again in ${data.retry_after} seconds.` : "";
    if (data.code === "rate_limited") return `You are sending messages too fast.${wait}`;
    if (data.code === "backend_unavailable") {
      return `The model is not available right now.${wait || " Try again in a moment."}`;
    }
    return `${data.detail || "Something went wrong."}${wait}`;
  }

  function resumeAfterReload() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    } catch {
      saved = null;
    }
    if (!saved || saved.conversationId !== conversationId) return;
    let element = list.querySelector(`[data-message-id="${CSS.escape(String(saved.messageId))}"]`);
    if (!element) element = appendMessage("assistant", saved.messageId);
    // The page's "incomplete" note described the answer at load time; the stream finishes it.
    element.querySelectorAll(".note").forEach((note) => note.remove());
    // From the start: the page shows what was stored at load time, the stream has it all.
    startStream({ element, streamId: saved.streamId, messageId: saved.messageId });
    resume();
  }

  async function resume() {
    try {
      await channel.connect();
      active.resumeId = channel.send("resume", { stream_id: active.streamId, after_seq: active.seq });
    } catch (error) {
      if (error.status === 401 && error.login) {
        location.assign(error.login);
        return;
      }
      scheduleResume();
    }
  }

  function scheduleResume() {
    if (!active || !active.streamId) {
      if (active) fail({ detail: "The connection was lost before the answer started." });
      return;
    }
    const delay = RETRY_DELAYS_MS[Math.min(retries, RETRY_DELAYS_MS.length - 1)];
    retries += 1;
    status.textContent = "Connection lost; reconnecting…";
    setTimeout(() => {
      if (active) resume();
    }, delay);
  }

  function remember() {
    if (!active.streamId) return;
    sessionStorage.setItem(
      STORAGE_KEY,
      JSON.stringify({
        streamId: active.streamId,
        messageId: active.messageId,
        conversationId,
      }),
    );
  }

  function forget() {
    sessionStorage.removeItem(STORAGE_KEY);
    active = null;
    retries = 0;
  }

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      if (active) renderNow();
    });
  }

  function renderNow() {
    const content = active.element.querySelector(".content");
    content.innerHTML = renderMarkdown(active.text);
    status.textContent = "";
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    stopButton.hidden = !busy;
    if (active) active.element.setAttribute("aria-busy", String(busy));
    if (!busy) list.querySelectorAll("[aria-busy=true]").forEach((e) => e.setAttribute("aria-busy", "false"));
  }

  function appendMessage(role, messageId) {
    const item = document.createElement("li");
    item.className = `message ${role}`;
    if (messageId) item.dataset.messageId = messageId;
    const who = document.createElement("h3");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "monGARS";
    const content = document.createElement("div");
    content.className = role === "user" ? "content plain" : "content markdown";
    item.append(who, content);
    list.append(item);
    list.parentElement.querySelector(".empty")?.remove();
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function addNote(element, text) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = text;
    element.append(note);
  }

  function say(text) {
    announcer.textContent = text;
  }

  function showError(text) {
    const box = root.querySelector("#chat-error");
    box.textContent = text;
    box.hidden = false;
  }
}
