/*
 * Chat widget: ask a question, read the streamed answer, check every citation against its passage.
 *
 * Plain JavaScript, no build step, nothing fetched from anywhere but the answer service itself.
 * Everything lives in a shadow root, so the host page's styles and ours never meet.
 *
 * Embed on any site the service allows (RAG_CORS_ORIGINS):
 *   <script src="https://answers.example.org/widget.js" data-api="https://answers.example.org" defer></script>
 * Options (data-* attributes on that script tag):
 *   data-api          base URL of the answer service (default: where widget.js came from)
 *   data-mount        CSS selector of an element to render the chat into, open, instead of a launcher button
 *   data-title        heading of the chat panel
 *   data-api-key      a client key, when the service requires one (it is visible to every visitor)
 *   data-source-base  base URL that relative article URLs resolve against (default: the host page)
 */
(function () {
  "use strict";

  if (window.RagChat) return; // included twice: the first copy owns the page

  var script = document.currentScript;

  // ------------------------------------------------------------------------------ options

  function readOptions(tag) {
    var data = (tag && tag.dataset) || {};
    var scriptOrigin = location.origin;
    try {
      if (tag && tag.src) scriptOrigin = new URL(tag.src, location.href).origin;
    } catch (e) { /* keep the page origin */ }
    var api = scriptOrigin;
    if (data.api) {
      try {
        var parsed = new URL(data.api.trim(), location.href);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") api = parsed.href;
      } catch (e) { /* an unusable data-api falls back to the script's origin */ }
    }
    return {
      api: api.replace(/\/+$/, ""),
      mount: data.mount || "",
      title: data.title || "Ask the encyclopedia",
      apiKey: data.apiKey || "",
      sourceBase: data.sourceBase || "",
    };
  }

  var options = readOptions(script);
  var apiOrigin = new URL(options.api).origin;
  var sameOrigin = apiOrigin === location.origin;

  // Timeouts: the server pings an open stream every 15 s, so 45 s of silence means it is gone.
  var IDLE_TIMEOUT_MS = 45000;
  var STORAGE_KEY = "rag-chat:v1:" + options.api;
  var COUNTER_FROM = 0.8; // show the length counter from 80 % of the limit

  // ------------------------------------------------------------------------------ small helpers

  function h(tag, attrs) {
    var el = document.createElement(tag);
    var key;
    attrs = attrs || {};
    for (key in attrs) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.slice(0, 2) === "on") el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(child.nodeType ? child : document.createTextNode(String(child)));
  }

  var ICONS = {
    send: ["M12 19V5", "M5 12l7-7 7 7"],
    chat: ["M4 5.5A1.5 1.5 0 0 1 5.5 4h13A1.5 1.5 0 0 1 20 5.5v9a1.5 1.5 0 0 1-1.5 1.5H9l-5 4z", "M8 9h8", "M8 12h5"],
    close: ["M6 6l12 12", "M18 6L6 18"],
    plus: ["M12 5v14", "M5 12h14"],
    external: ["M14 4h6v6", "M20 4l-9 9", "M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5"],
    info: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z", "M12 11v6", "M12 7.5v.01"],
    alert: ["M12 3.5l9.5 17h-19z", "M12 10v4.5", "M12 17.5v.01"],
    retry: ["M4.5 12a7.5 7.5 0 1 0 2.2-5.3", "M4.5 4.5v4h4"],
    quote: ["M5 6h14", "M5 10h14", "M5 14h9", "M5 18h6"],
  };

  function icon(name) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "icon icon-" + name);
    ICONS[name].forEach(function (d) {
      var path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    });
    return svg;
  }

  // The API counts characters after the same clean-up (NFC, control and zero-width characters
  // dropped, whitespace collapsed) and counts code points, so the browser does exactly that.
  var CONTROL_RE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]/g;

  function cleanQuestion(text) {
    return text.normalize("NFC").replace(CONTROL_RE, "").split(/\s+/).filter(Boolean).join(" ");
  }

  function codePoints(text) {
    return Array.from(text).length;
  }

  function formatNumber(n) {
    return n.toLocaleString("en-US");
  }

  // Offsets from the API count code points (Python strings); JavaScript strings count UTF-16 units,
  // so slicing goes through code points to stay exact beyond the Basic Multilingual Plane.
  function splitQuote(text, start, end, quote) {
    var chars = Array.from(text);
    var before = chars.slice(0, start).join("");
    var middle = chars.slice(start, end).join("");
    var after = chars.slice(end).join("");
    if (quote && middle !== quote) {
      var at = text.indexOf(quote); // never expected: offsets and quotes are checked server-side
      if (at < 0) return [text, "", ""];
      return [text.slice(0, at), quote, text.slice(at + quote.length)];
    }
    return [before, middle, after];
  }

  // The short answer inside the quote it lies in: its offsets are the passage's, like the quote's, so
  // quote.slice(start - citation.start, end - citation.start) is the span (in code points, as above).
  // Marked only there and only when it is exactly the span: never a guess at another occurrence.
  function markShortAnswer(quote, citation, short) {
    var chars = Array.from(quote);
    var from = short.start - citation.start;
    var to = short.end - citation.start;
    var span = chars.slice(from, to).join("");
    if (from < 0 || to > chars.length || from >= to || span !== short.text) return quote; // never expected
    return [chars.slice(0, from).join(""), h("mark", { class: "rag-short-answer-mark", text: span }), chars.slice(to).join("")];
  }

  function crumbs(section, title) {
    var parts = (section || []).slice();
    if (parts.length && parts[0] === title) parts.shift();
    return parts.length ? parts : ["Introduction"];
  }

  // The server's RAG_SOURCE_BASE_URL (from /widget-config.json); data-source-base on the script tag wins.
  var serverSourceBase = "";

  function sourceHref(url, item) {
    if (!url) return null;
    try {
      var base = options.sourceBase || serverSourceBase || (sameOrigin && !/^[a-z][a-z0-9+.-]*:/i.test(url) ? null : document.baseURI);
      if (!base) return null; // a relative URL on the service's own page would point at the service
      var resolved = new URL(url, base);
      if (resolved.protocol !== "http:" && resolved.protocol !== "https:") return null;
      // Where in the source: the page of a PDF (viewers open #page=N) or the id of an HTML section.
      if (item && item.page) resolved.hash = "page=" + item.page;
      else if (item && item.anchor) resolved.hash = encodeURIComponent(item.anchor);
      return resolved.href;
    } catch (e) {
      return null;
    }
  }

  function pageLabel(item) {
    return item && item.page ? "p. " + item.page : "";
  }

  function withPage(text, item) {
    var page = pageLabel(item);
    return page ? text + " · " + page : text;
  }

  function stripMarkers(text) {
    return text.replace(/\s*\[\d+\]/g, "");
  }

  // ------------------------------------------------------------------------------ storage

  // The conversation survives a reload within the tab; sessionStorage can be missing or full
  // (private modes, sandboxed frames), in which case the widget simply forgets.
  var storage = {
    load: function () {
      try {
        var raw = window.sessionStorage.getItem(STORAGE_KEY);
        var parsed = raw ? JSON.parse(raw) : null;
        if (parsed && parsed.v === 1 && Array.isArray(parsed.turns)) return parsed;
      } catch (e) { /* unreadable: start afresh */ }
      return { v: 1, turns: [], open: false };
    },
    save: function (state) {
      try {
        window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(state));
      } catch (e) { /* full or unavailable: keep going without persistence */ }
    },
  };

  // ------------------------------------------------------------------------------ the API

  function AskError(kind, message, extra) {
    this.kind = kind;
    this.message = message;
    this.status = (extra && extra.status) || 0;
    this.requestId = (extra && extra.requestId) || "";
  }

  // When the service requires keys, it gives its own page (same origin, no data-api-key) a short-lived
  // page token in /widget-config.json; it is renewed once when the service says it has lapsed.
  var pageToken = "";

  function apiHeaders(accept) {
    var headers = { Accept: accept };
    if (options.apiKey) headers["X-API-Key"] = options.apiKey;
    else if (pageToken) headers.Authorization = "Bearer " + pageToken;
    return headers;
  }

  // A failed fetch looks the same whether the server is down or the browser refused the response
  // (CORS). Across origins, an opaque no-cors request tells the two apart: it succeeds when the
  // server is up, so the refusal was the browser's.
  function networkError() {
    if (sameOrigin) {
      return Promise.resolve(new AskError("network", "Could not reach the answer service. Check your connection, then retry."));
    }
    return fetch(options.api + "/health", { mode: "no-cors", cache: "no-store", credentials: "omit" }).then(
      function () {
        return new AskError(
          "refused",
          "The answer service does not accept questions from this site (" + location.origin + "). " +
            "Its operator can allow this origin in RAG_CORS_ORIGINS."
        );
      },
      function () {
        return new AskError("network", "Could not reach the answer service. Check your connection, then retry.");
      }
    );
  }

  function httpError(response) {
    var requestId = response.headers.get("X-Request-ID") || "";
    return response.text().then(function (body) {
      var detail = "";
      try {
        var parsed = JSON.parse(body);
        detail = typeof parsed.detail === "string" ? parsed.detail : "";
        requestId = requestId || parsed.request_id || "";
      } catch (e) { /* not JSON: a proxy's page */ }
      var status = response.status;
      var message;
      if (status === 429) message = "Too many questions at once. " + (detail || "Wait a moment, then retry.");
      else if (status === 401 || status === 403) message = "The answer service refused this widget: " + (detail || "not authorised") + ".";
      else if (status >= 400 && status < 500) message = "The service could not take this question: " + (detail || "HTTP " + status) + ".";
      else message = "The answer service had a problem (HTTP " + status + ")" + (detail ? ": " + detail : "") + ". Please retry.";
      return new AskError("http", message, { status: status, requestId: requestId });
    });
  }

  // Server-sent events over fetch (EventSource cannot POST): a small parser for the event stream format.
  function sseParser(onEvent) {
    var buffer = "";
    return function push(text) {
      buffer += text;
      // Hold back a trailing \r: it may be the first half of a \r\n split across two chunks.
      var keep = buffer.slice(-1) === "\r" ? "\r" : "";
      var body = (keep ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
      var at;
      while ((at = body.indexOf("\n\n")) >= 0) {
        var block = body.slice(0, at);
        body = body.slice(at + 2);
        var event = "message";
        var data = [];
        block.split("\n").forEach(function (line) {
          if (!line || line.charAt(0) === ":") return; // comments carry the server's keep-alive pings
          var colon = line.indexOf(":");
          var field = colon < 0 ? line : line.slice(0, colon);
          var value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.charAt(0) === " ") value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        });
        if (data.length) onEvent(event, data.join("\n"));
      }
      buffer = body + keep;
    };
  }

  function withTimeout(promise, controller) {
    var timer;
    var timeout = new Promise(function (resolve, reject) {
      timer = setTimeout(function () {
        controller.abort();
        reject(new AskError("stalled", "The answer service stopped responding. Please retry."));
      }, IDLE_TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(function () { clearTimeout(timer); });
  }

  /** The heading of a reply that does not answer, by the service's reason. */
  function abstentionTitle(reason) {
    if (reason === "needs_context") return "The question needs its context";
    if (reason === "references_only") return "Only in the articles' sources";
    return "Not covered by the articles";
  }

  /** POST /ask as a stream; calls handlers.passages / shortAnswer / sentence / abstained / partial and resolves with `done`. */
  function streamAnswer(body, handlers, controller) {
    return loadConfig().then(function () { return sendQuestion(body, handlers, controller, false); });
  }

  function sendQuestion(body, handlers, controller, renewed) {
    var headers = apiHeaders("text/event-stream");
    headers["Content-Type"] = "application/json";
    var request = fetch(options.api + "/ask", {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      signal: controller.signal,
    });
    return withTimeout(request, controller)
      .catch(function (err) {
        if (err instanceof AskError) throw err;
        if (controller.signal.aborted) throw new AskError("aborted", "Cancelled.");
        return networkError().then(function (e) { throw e; });
      })
      .then(function (response) {
        if (response.status === 401 && pageToken && !renewed) {
          // The page token lapsed (the tab stayed open): take a fresh one and ask again, once.
          return loadConfig(true).then(function () { return sendQuestion(body, handlers, controller, true); });
        }
        if (!response.ok) return httpError(response).then(function (e) { throw e; });
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("text/event-stream") < 0) {
          // Something between us and the server turned the stream into one JSON body: use it whole.
          return response.json().then(function (done) { return done; });
        }
        return readStream(response, handlers, controller);
      });
  }

  function readStream(response, handlers, controller) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var result = null;
    var failure = null;
    var push = sseParser(function (event, data) {
      var payload;
      try {
        payload = JSON.parse(data);
      } catch (e) {
        failure = failure || new AskError("stream", "The answer arrived garbled. Please retry.");
        return;
      }
      if (event === "passages") handlers.passages(payload);
      else if (event === "short_answer") handlers.shortAnswer(payload);
      else if (event === "sentence") handlers.sentence(payload);
      else if (event === "abstained") handlers.abstained(payload);
      else if (event === "partial") handlers.partial(payload);
      else if (event === "done") result = payload;
      else if (event === "error") failure = new AskError("server", (payload.detail || "The service failed while answering") + ". Please retry.");
    });

    function pump() {
      return withTimeout(reader.read(), controller).then(
        function (chunk) {
          if (chunk.done) {
            push(decoder.decode() + "\n\n"); // flush an event the server did not terminate
            if (failure) throw failure;
            if (!result) throw new AskError("cut", "The answer was cut off before it finished (the connection closed). Please retry.");
            return result;
          }
          push(decoder.decode(chunk.value, { stream: true }));
          if (failure) { controller.abort(); throw failure; }
          if (result) { reader.cancel().catch(function () {}); return result; }
          return pump();
        },
        function (err) {
          if (err instanceof AskError) throw err;
          if (controller.signal.aborted) throw new AskError("aborted", "Cancelled.");
          throw new AskError("cut", "The answer was cut off before it finished (the connection closed). Please retry.");
        }
      );
    }
    return pump();
  }

  function fetchPassage(id) {
    return loadConfig().then(function () {
      return fetch(options.api + "/passages/" + encodeURIComponent(id), {
        headers: apiHeaders("application/json"),
        mode: "cors",
        credentials: "omit",
      });
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  var configRequest = null;

  /** The server's limits (and, for the service's own page, a page token); fetched once unless `fresh`. */
  function loadConfig(fresh) {
    if (configRequest && !fresh) return configRequest;
    configRequest = fetch(options.api + "/widget-config.json", {
      mode: "cors", credentials: "omit", cache: "no-store", headers: { Accept: "application/json" },
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .catch(function () { return null; }) // without it the server still enforces every limit
      .then(function (config) {
        pageToken = (config && config.page_token) || "";
        if (!config) configRequest = null; // try again with the next question
        return config;
      });
    return configRequest;
  }

  // ------------------------------------------------------------------------------ the widget

  function Widget(host, mode) {
    this.mode = mode; // "inline" (rendered into the page, always open) or "launcher" (button + panel)
    this.state = storage.load();
    this.config = null;
    this.controller = null;
    this.turnEls = {};
    this.root = host.attachShadow({ mode: "open" });
    host.setAttribute("data-rag-chat", mode);
    this.build();
    this.restore();
    var self = this;
    loadConfig().then(function (config) {
      self.config = config;
      if (config && config.source_base_url) serverSourceBase = config.source_base_url;
      self.updateComposer();
    });
  }

  Widget.prototype.build = function () {
    var self = this;
    var ready = false;
    var frame = h("div", { class: "frame frame-" + this.mode, hidden: true });
    var stylesheet = h("link", { rel: "stylesheet", href: options.api + "/widget.css" });
    // Show nothing until the stylesheet is in, so no unstyled flash on the host page.
    function reveal() { if (!ready) { ready = true; frame.hidden = false; } }
    stylesheet.addEventListener("load", reveal);
    stylesheet.addEventListener("error", reveal);
    this.root.appendChild(stylesheet);
    this.root.appendChild(frame);

    this.announcer = h("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true" });

    var titleId = "rag-chat-title";
    this.clearButton = h(
      "button",
      { type: "button", class: "head-btn", title: "Start a new conversation", onclick: function () { self.clear(); } },
      icon("plus"),
      h("span", { text: "New chat" })
    );
    var headButtons = [this.clearButton];
    if (this.mode === "launcher") {
      headButtons.push(
        h("button", { type: "button", class: "icon-btn", "aria-label": "Close the chat", onclick: function () { self.setOpen(false, true); } }, icon("close"))
      );
    }
    var header = h(
      "header",
      { class: "head" },
      h("div", { class: "head-text" },
        h("h2", { class: "head-title", id: titleId, text: options.title }),
        h("p", { class: "head-sub", text: "Every sentence is a quote you can check." })
      ),
      h("div", { class: "head-actions" }, headButtons)
    );

    this.empty = h(
      "div",
      { class: "empty" },
      h("div", { class: "empty-mark" }, icon("quote")),
      h("p", { class: "empty-title", text: "Ask a question about the articles" }),
      h("p", { class: "empty-text", text: "Answers are quoted word for word from the encyclopedia. Select a number after a sentence to see the passage it comes from, with the quote highlighted." })
    );
    this.list = h("ol", { class: "turns" });
    this.log = h("div", { class: "log", tabindex: "0", role: "region", "aria-label": "Conversation" }, this.empty, this.list);
    this.following = true;
    this.log.addEventListener("scroll", function () {
      var log = self.log;
      self.following = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    });

    this.input = h("textarea", {
      id: "rag-chat-question",
      class: "input",
      rows: "1",
      placeholder: "Ask a question…",
      autocomplete: "off",
      enterkeyhint: "send",
      "aria-describedby": "rag-chat-hint rag-chat-limit",
    });
    this.sendButton = h("button", { type: "submit", class: "send", "aria-label": "Send question" }, icon("send"));
    this.counter = h("span", { class: "counter", hidden: true, "aria-hidden": "true" });
    this.limitMessage = h("p", { class: "limit", id: "rag-chat-limit", role: "alert" });
    this.form = h(
      "form",
      { class: "composer", novalidate: true },
      h("label", { class: "sr-only", for: "rag-chat-question", text: "Your question" }),
      h("div", { class: "field" }, this.input, this.sendButton),
      this.limitMessage,
      h("div", { class: "hint-row" },
        h("p", { class: "hint", id: "rag-chat-hint", text: "Enter to send · Shift+Enter for a new line" }),
        this.counter
      )
    );

    this.panel = h(
      "section",
      { class: "panel", id: "rag-chat-panel", "aria-labelledby": titleId },
      header,
      this.log,
      this.form,
      this.announcer
    );
    this.viewer = this.buildViewer();

    if (this.mode === "launcher") {
      this.launcher = h(
        "button",
        { type: "button", class: "launcher", "aria-controls": "rag-chat-panel", "aria-expanded": "false", onclick: function () { self.setOpen(true, true); } },
        icon("chat"),
        h("span", { class: "launcher-label", text: "Ask a question" })
      );
      frame.appendChild(this.launcher);
      this.panel.setAttribute("role", "dialog");
      this.panel.setAttribute("aria-modal", "false");
      this.panel.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && !self.viewer.open) { event.preventDefault(); self.setOpen(false, true); }
      });
    }
    frame.appendChild(this.panel);
    frame.appendChild(this.viewer);

    this.form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.submit();
    });
    this.input.addEventListener("keydown", function (event) {
      // Enter sends, Shift+Enter is a new line; never while an input method is composing a character.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        self.submit();
      }
    });
    this.input.addEventListener("input", function () {
      self.updateComposer();
      self.autosize();
    });
  };

  Widget.prototype.buildViewer = function () {
    var self = this;
    this.viewerKicker = h("p", { class: "viewer-kicker" });
    this.viewerTitle = h("h2", { class: "viewer-title", id: "rag-chat-viewer-title" });
    this.viewerCrumbs = h("ol", { class: "crumbs" });
    this.viewerText = h("div", { class: "passage" });
    this.viewerFoot = h("div", { class: "viewer-foot" });
    this.viewerClose = h("button", { type: "button", class: "icon-btn", "aria-label": "Close the passage", onclick: function () { self.viewer.close(); } }, icon("close"));
    var viewer = h(
      "dialog",
      { class: "viewer", "aria-labelledby": "rag-chat-viewer-title" },
      h("div", { class: "viewer-head" }, this.viewerKicker, this.viewerClose),
      this.viewerTitle,
      h("nav", { class: "crumbs-nav", "aria-label": "Section" }, this.viewerCrumbs),
      this.viewerText,
      this.viewerFoot
    );
    viewer.addEventListener("close", function () {
      // Back to the badge (or source) that opened the passage, so keyboard users keep their place.
      if (self.opener && self.opener.isConnected) self.opener.focus();
      self.opener = null;
    });
    viewer.addEventListener("click", function (event) {
      if (event.target === viewer) viewer.close(); // a click on the backdrop
    });
    return viewer;
  };

  Widget.prototype.setOpen = function (open, focus) {
    if (this.mode !== "launcher") return;
    this.state.open = open;
    this.panel.hidden = !open;
    this.launcher.hidden = open;
    this.launcher.setAttribute("aria-expanded", String(open));
    storage.save(this.state);
    if (focus) (open ? this.input : this.launcher).focus();
    if (open) this.scrollToEnd(true);
  };

  Widget.prototype.autosize = function () {
    // Chromium grows the box by CSS (field-sizing); elsewhere measure it (CSSOM, allowed under a strict CSP).
    if (window.CSS && CSS.supports && CSS.supports("field-sizing", "content")) return;
    this.input.style.height = "auto";
    this.input.style.height = Math.min(this.input.scrollHeight, 160) + "px";
  };

  Widget.prototype.limit = function () {
    return this.config && this.config.max_question_chars ? this.config.max_question_chars : 0;
  };

  /** Counter and over-limit message; returns the cleaned question's length. */
  Widget.prototype.updateComposer = function (showError) {
    var length = codePoints(cleanQuestion(this.input.value));
    var limit = this.limit();
    var over = limit > 0 && length > limit;
    this.counter.hidden = !(limit > 0 && length >= limit * COUNTER_FROM);
    this.counter.textContent = formatNumber(length) + " / " + formatNumber(limit);
    this.counter.classList.toggle("counter-over", over);
    this.input.setAttribute("aria-invalid", String(over));
    if (!over) this.limitMessage.textContent = "";
    else if (showError || this.limitMessage.textContent) {
      this.limitMessage.textContent =
        "Your question is " + formatNumber(length) + " characters long; the limit is " + formatNumber(limit) + ". Shorten it to send.";
    }
    this.sendButton.disabled = this.busy();
    return length;
  };

  Widget.prototype.busy = function () {
    return this.controller !== null;
  };

  Widget.prototype.submit = function () {
    var question = cleanQuestion(this.input.value);
    if (!question) return;
    var limit = this.limit();
    if (limit > 0 && codePoints(question) > limit) {
      this.updateComposer(true);
      this.input.focus();
      return;
    }
    if (this.busy()) return; // one question at a time; the text stays in the box
    this.input.value = "";
    this.autosize();
    this.ask(question);
  };

  /** On a phone the page scrolls around the inline chat: bring all of it into view when a question goes. */
  Widget.prototype.reveal = function () {
    if (this.mode !== "inline" || !this.panel.getBoundingClientRect) return;
    var box = this.panel.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) this.panel.scrollIntoView({ block: "nearest" });
  };

  Widget.prototype.history = function (beforeIndex) {
    var questions = [];
    var turns = this.state.turns.slice(0, beforeIndex);
    turns.forEach(function (t) {
      if (t.status === "answered" || t.status === "abstained") questions.push(t.question);
    });
    var keep = (this.config && this.config.max_history) || 5;
    return questions.slice(-keep);
  };

  Widget.prototype.ask = function (question) {
    if (this.busy()) return;
    var turn = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), question: question, status: "pending" };
    this.state.turns.push(turn);
    this.run(turn);
    this.reveal();
  };

  Widget.prototype.run = function (turn) {
    var self = this;
    turn.status = "pending";
    turn.sentences = [];
    turn.citations = [];
    turn.passages = [];
    turn.shortAnswer = null;
    turn.error = null;
    turn.message = "";
    turn.phase = "searching";
    this.controller = new AbortController();
    var controller = this.controller;
    this.render(turn);
    this.updateComposer();
    this.scrollToEnd(true);
    this.announce("Searching the articles.");
    storage.save(this.state);

    var index = this.state.turns.indexOf(turn);
    var body = { question: turn.question, history: this.history(index) };
    var handlers = {
      passages: function (payload) {
        turn.status = "streaming";
        turn.phase = "reading";
        turn.passages = payload.passages || [];
        self.render(turn);
      },
      shortAnswer: function (payload) {
        turn.shortAnswer = payload; // before the sentences; its badge appears with the sentence that cites it
        self.render(turn);
      },
      sentence: function (payload) {
        turn.status = "streaming";
        turn.sentences.push({ text: payload.text, citations: payload.citations || [] });
        (payload.citations || []).forEach(function (c) {
          if (!turn.citations.some(function (known) { return known.n === c.n; })) turn.citations.push(c);
        });
        self.render(turn);
        self.scrollToEnd(false);
      },
      abstained: function (payload) {
        turn.message = payload.message || "";
        turn.reason = payload.reason || "";
      },
      partial: function (payload) {
        turn.note = payload.message || "";
        self.render(turn);
      },
    };
    streamAnswer(body, handlers, controller)
      .then(function (done) {
        self.finish(turn, done);
      })
      .catch(function (err) {
        if (!(err instanceof AskError)) err = new AskError("bug", "Something went wrong in the chat. Please retry.");
        if (err.kind === "aborted") return; // cleared by the user: the turn is gone
        turn.status = "error";
        turn.error = { message: err.message, requestId: err.requestId };
        self.render(turn, { alert: true });
        self.announce("");
      })
      .finally(function () {
        if (self.controller === controller) self.controller = null;
        self.updateComposer();
        storage.save(self.state);
        self.scrollToEnd(false);
      });
  };

  Widget.prototype.finish = function (turn, done) {
    // The complete answer is authoritative: it names every citation and passage once more.
    turn.citations = done.citations || [];
    if (!turn.sentences.length && done.answer && !done.abstained) {
      turn.sentences = [{ text: done.answer, citations: turn.citations }]; // a non-streamed answer
    }
    var cited = {};
    turn.citations.forEach(function (c) { cited[c.passage_id] = true; });
    var passages = done.passages || turn.passages || [];
    var why = done.abstention || null;
    turn.shortAnswer = done.abstained ? null : done.short_answer || null;
    turn.reason = why ? why.reason : turn.reason || "";
    turn.note = why && !done.abstained ? why.message : "";
    if (done.abstained) {
      turn.status = "abstained";
      turn.message = done.answer || turn.message;
      turn.sentences = [];
      turn.passages = passages.slice(0, 3); // related reading: a few, never evidence
    } else {
      turn.status = "answered";
      turn.passages = passages.filter(function (p) { return cited[p.passage_id]; }); // what the viewer needs
    }
    turn.phase = "";
    this.render(turn);
    if (done.abstained) this.announce(abstentionTitle(turn.reason) + ". " + turn.message);
    else {
      var sources = new Set(turn.citations.map(function (c) { return c.passage_id; })).size;
      this.announce(
        "Answer, from " + sources + " source" + (sources === 1 ? "" : "s") + ": " +
          (turn.shortAnswer ? turn.shortAnswer.text + ". " : "") + stripMarkers(done.answer || "") +
          (turn.note ? " Not covered: " + turn.note : "")
      );
    }
  };

  Widget.prototype.retry = function (turn) {
    if (this.busy()) return;
    this.run(turn);
    this.input.focus();
  };

  Widget.prototype.clear = function () {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.state.turns = [];
    this.turnEls = {};
    this.list.textContent = "";
    this.empty.hidden = false;
    this.clearButton.disabled = true;
    storage.save(this.state);
    this.updateComposer();
    this.announce("Conversation cleared.");
    this.input.focus();
  };

  Widget.prototype.restore = function () {
    var self = this;
    this.state.turns.forEach(function (turn) {
      if (turn.status === "pending" || turn.status === "streaming") {
        // The page went away mid-answer: offer the question again rather than a spinner that never ends.
        turn.status = "error";
        turn.error = { message: "The page was reloaded before this answer finished. Please retry.", requestId: "" };
      }
      self.render(turn);
    });
    if (this.mode === "launcher") this.setOpen(!!this.state.open, false);
    this.scrollToEnd(true);
  };

  Widget.prototype.announce = function (text) {
    // Clearing first makes a repeated message count as new for screen readers.
    var announcer = this.announcer;
    announcer.textContent = "";
    if (text) setTimeout(function () { announcer.textContent = text; }, 60);
  };

  /** Follow new content unless the reader has scrolled up to read something earlier. */
  Widget.prototype.scrollToEnd = function (force) {
    if (force) this.following = true;
    if (this.following) this.log.scrollTop = this.log.scrollHeight;
  };

  // ------------------------------------------------------------------------------ rendering

  Widget.prototype.render = function (turn, flags) {
    var el = this.renderTurn(turn, flags || {});
    var old = this.turnEls[turn.id];
    var focusKey = null;
    if (old) {
      var active = this.root.activeElement;
      if (active && old.contains(active)) focusKey = active.getAttribute("data-key");
      old.replaceWith(el);
    } else {
      this.list.appendChild(el);
    }
    this.turnEls[turn.id] = el;
    if (focusKey) {
      var again = el.querySelector('[data-key="' + focusKey + '"]');
      if (again) again.focus();
    }
    this.empty.hidden = this.state.turns.length > 0;
    this.clearButton.disabled = this.state.turns.length === 0;
  };

  Widget.prototype.renderTurn = function (turn, flags) {
    var question = h(
      "div",
      { class: "msg msg-user" },
      h("p", { class: "bubble" }, h("span", { class: "sr-only", text: "You asked: " }), turn.question)
    );
    var reply;
    if (turn.status === "error") reply = this.renderError(turn, flags.alert);
    else if (turn.status === "abstained") reply = this.renderAbstained(turn);
    else reply = this.renderAnswer(turn);
    return h("li", { class: "turn", "data-turn": turn.id }, question, reply);
  };

  Widget.prototype.renderPending = function (turn) {
    var text = turn.phase === "reading"
      ? "Reading " + turn.passages.length + " passage" + (turn.passages.length === 1 ? "" : "s") + "…"
      : "Searching the articles…";
    return h("p", { class: "pending" }, h("span", { class: "dots", "aria-hidden": "true" }, h("span"), h("span"), h("span")), text);
  };

  Widget.prototype.renderAnswer = function (turn) {
    var self = this;
    var done = turn.status === "answered";
    var state = done ? "done" : turn.status === "streaming" && turn.sentences.length ? "streaming" : "pending";
    var byN = {};
    turn.citations.forEach(function (c) { byN[c.n] = c; });
    var reply = h("div", { class: "msg msg-bot answer", "data-kind": "answer", "data-state": state, "aria-busy": String(!done) });
    if (turn.shortAnswer) reply.appendChild(this.renderShortAnswer(turn, byN));
    if (!turn.sentences.length) {
      reply.appendChild(this.renderPending(turn));
      return reply;
    }
    var text = h("p", { class: "answer-text" });
    turn.sentences.forEach(function (sentence, i) {
      sentence.citations.forEach(function (c) { if (!byN[c.n]) byN[c.n] = c; });
      if (i > 0) text.appendChild(document.createTextNode(" "));
      text.appendChild(self.renderSentence(turn, sentence.text, byN));
    });
    reply.appendChild(text);
    if (!done) {
      reply.appendChild(h("span", { class: "caret", "aria-hidden": "true" }));
      return reply;
    }
    if (turn.note) {
      // the part of the question the quotes leave out, said plainly under the answer
      reply.appendChild(h("p", { class: "partial-note", "data-kind": "partial" }, icon("info"), h("span", { text: turn.note })));
    }
    reply.appendChild(this.renderSources(turn));
    return reply;
  };

  /** The short answer, first and in bold, with the badge of the citation whose quote holds it. */
  Widget.prototype.renderShortAnswer = function (turn, byN) {
    var short = turn.shortAnswer;
    var citation = byN[short.citation];
    return h(
      "p",
      { class: "rag-short-answer", "data-kind": "short-answer" },
      h("strong", { text: stripMarkers(short.text) }),
      "\u00a0",
      // the citation arrives with the first sentence that cites it; until then the marker is plain text
      citation ? this.badge(turn, citation, "short-badge-") : h("sup", { text: "[" + short.citation + "]" })
    );
  };

  /** One sentence: its text with each [n] marker turned into a badge button. */
  Widget.prototype.renderSentence = function (turn, text, byN) {
    var self = this;
    var span = h("span", { class: "sentence" });
    var pattern = /\s*\[(\d+)\]/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text))) {
      if (match.index > last) span.appendChild(document.createTextNode(text.slice(last, match.index)));
      var n = Number(match[1]);
      var citation = byN[n];
      if (citation) {
        span.appendChild(document.createTextNode("\u00a0")); // keep the badge on the sentence's last line
        span.appendChild(this.badge(turn, citation));
      } else {
        span.appendChild(document.createTextNode(match[0])); // never expected: markers always name a citation
      }
      last = pattern.lastIndex;
    }
    if (last < text.length) span.appendChild(document.createTextNode(text.slice(last)));
    return span;
  };

  Widget.prototype.badge = function (turn, citation, keyPrefix) {
    var self = this;
    var where = withPage(crumbs(citation.section, citation.title).join(" › "), citation);
    return h(
      "button",
      {
        type: "button",
        class: "badge",
        "data-n": citation.n,
        "data-key": (keyPrefix || "badge-") + citation.n,
        "aria-label": "Citation " + citation.n + ": " + citation.title + ", " + where,
        title: where,
        onclick: function (event) { self.openCitation(turn, citation, event.currentTarget); },
      },
      String(citation.n)
    );
  };

  Widget.prototype.renderSources = function (turn) {
    var self = this;
    // Citations grouped by passage, in order of first use: one line per passage, its numbers in front.
    var groups = [];
    var byPassage = {};
    turn.citations.slice().sort(function (a, b) { return a.n - b.n; }).forEach(function (c) {
      if (!byPassage[c.passage_id]) {
        byPassage[c.passage_id] = { first: c, numbers: [] };
        groups.push(byPassage[c.passage_id]);
      }
      byPassage[c.passage_id].numbers.push(c.n);
    });
    var items = groups.map(function (group) {
      var c = group.first;
      var path = crumbs(c.section, c.title);
      return h(
        "li",
        null,
        h(
          "button",
          {
            type: "button",
            class: "source",
            "data-key": "source-" + c.n,
            "aria-label": "Source for citation" + (group.numbers.length > 1 ? "s " : " ") + group.numbers.join(", ") + ": " + c.title + ", " + withPage(path.join(" › "), c),
            onclick: function (event) { self.openCitation(turn, c, event.currentTarget); },
          },
          h("span", { class: "source-nums", "aria-hidden": "true" }, group.numbers.map(function (n) { return h("span", { class: "num", text: String(n) }); })),
          h("span", { class: "source-text", "aria-hidden": "true" },
            h("span", { class: "source-section", text: withPage(path[path.length - 1], c) }),
            h("span", { class: "source-article", text: c.title + (path.length > 1 ? " › " + path.slice(0, -1).join(" › ") : "") })
          )
        )
      );
    });
    return h(
      "div",
      { class: "sources" },
      h("h3", { class: "sources-title", text: "Sources" }),
      h("ul", { class: "source-list" }, items)
    );
  };

  Widget.prototype.renderAbstained = function (turn) {
    var self = this;
    var related = (turn.passages || []).map(function (p) {
      var path = crumbs(p.section, p.title);
      return h(
        "li",
        null,
        h(
          "button",
          {
            type: "button",
            class: "source related-item",
            "data-key": "related-" + p.passage_id,
            onclick: function (event) { self.openPassage(p, null, event.currentTarget, "Related reading · does not answer the question"); },
          },
          h("span", { class: "source-text" },
            h("span", { class: "source-section", text: withPage(path[path.length - 1], p) }),
            h("span", { class: "source-article", text: p.title + (path.length > 1 ? " › " + path.slice(0, -1).join(" › ") : "") })
          )
        )
      );
    });
    return h(
      "div",
      { class: "msg msg-bot abstained", "data-kind": "abstained", "data-state": "done", "data-reason": turn.reason || "" },
      h("p", { class: "notice-title" }, icon("info"), h("span", { text: abstentionTitle(turn.reason) })),
      h("p", { class: "notice-text", text: turn.message || "The articles do not answer this question." }),
      related.length
        ? h(
            "div",
            { class: "related" },
            h("h3", { class: "sources-title" }, "Related reading ", h("span", { class: "low", text: "(does not answer the question)" })),
            h("ul", { class: "source-list" }, related)
          )
        : null
    );
  };

  Widget.prototype.renderError = function (turn, alert) {
    var self = this;
    return h(
      "div",
      { class: "msg msg-bot error", "data-kind": "error", "data-state": "error", role: alert ? "alert" : null },
      h("p", { class: "notice-title" }, icon("alert"), h("span", { text: "No answer" })),
      h("p", { class: "notice-text", text: turn.error ? turn.error.message : "Something went wrong." }),
      turn.error && turn.error.requestId ? h("p", { class: "ref", text: "Reference: " + turn.error.requestId }) : null,
      h(
        "button",
        { type: "button", class: "retry", "data-key": "retry", onclick: function () { self.retry(turn); } },
        icon("retry"),
        h("span", { text: "Retry" })
      )
    );
  };

  // ------------------------------------------------------------------------------ the passage viewer

  Widget.prototype.openCitation = function (turn, citation, opener) {
    var self = this;
    var passage = (turn.passages || []).filter(function (p) { return p.passage_id === citation.passage_id; })[0];
    var kicker = withPage("Citation " + citation.n, citation);
    var short = turn.shortAnswer && turn.shortAnswer.citation === citation.n ? turn.shortAnswer : null;
    if (passage) {
      this.openPassage(passage, citation, opener, kicker, short);
      return;
    }
    // Not kept with the answer (never expected): fetch it, and show the quote meanwhile.
    this.openPassage({ title: citation.title, section: citation.section, url: citation.url, text: citation.quote, page: citation.page, anchor: citation.anchor }, null, opener, kicker + " · loading the passage…");
    fetchPassage(citation.passage_id).then(
      function (p) { if (self.viewer.open) self.openPassage(p, citation, opener, kicker, short); },
      function () { self.viewerKicker.textContent = kicker + " · the full passage could not be loaded"; }
    );
  };

  Widget.prototype.openPassage = function (passage, citation, opener, kicker, short) {
    this.opener = opener;
    this.viewerKicker.textContent = kicker;
    this.viewerTitle.textContent = passage.title;
    this.viewerCrumbs.textContent = "";
    var self = this;
    crumbs(passage.section, passage.title).forEach(function (part) {
      self.viewerCrumbs.appendChild(h("li", { text: part }));
    });
    this.viewerText.textContent = "";
    var mark = null;
    if (citation) {
      var parts = splitQuote(passage.text, citation.start, citation.end, citation.quote);
      mark = h("mark", { class: "quote" }, short ? markShortAnswer(parts[1], citation, short) : parts[1]);
      append(this.viewerText, [parts[0], mark, parts[2]]);
    } else {
      this.viewerText.textContent = passage.text;
    }
    this.viewerFoot.textContent = "";
    // The citation's own page (a quote can start on a later page than its passage), else the passage's.
    var place = citation && citation.page ? citation : passage;
    var href = sourceHref(passage.url, { page: place.page, anchor: passage.anchor });
    if (href) {
      var label = pageLabel(place) ? "Read the source at " + pageLabel(place) : "Read the article";
      this.viewerFoot.appendChild(
        h("a", { class: "source-url", href: href, target: "_blank", rel: "noopener noreferrer" }, h("span", { text: label }), icon("external"))
      );
    } else if (pageLabel(place)) {
      this.viewerFoot.appendChild(h("span", { class: "page-text", text: pageLabel(place) }));
    }
    if (passage.url) this.viewerFoot.appendChild(h("span", { class: "url-text", text: href || passage.url }));
    if (citation) this.viewerFoot.appendChild(h("span", { class: "legend" }, h("span", { class: "legend-swatch", "aria-hidden": "true" }), "Quoted in the answer"));
    if (mark && mark.querySelector(".rag-short-answer-mark")) {
      this.viewerFoot.appendChild(h("span", { class: "legend" }, h("span", { class: "legend-swatch legend-short", "aria-hidden": "true" }), "The short answer"));
    }
    if (!this.viewer.open) this.viewer.showModal();
    this.viewerClose.focus();
    this.viewerText.scrollTop = 0;
    if (mark) mark.scrollIntoView({ block: "nearest" });
  };

  // ------------------------------------------------------------------------------ mounting

  function mount() {
    var target = options.mount ? document.querySelector(options.mount) : null;
    var widget;
    if (target) {
      widget = new Widget(target, "inline");
    } else {
      var host = document.createElement("rag-chat-widget");
      document.body.appendChild(host);
      widget = new Widget(host, "launcher");
    }
    // Elements of the host page carrying data-rag-ask="question" ask it when clicked (example chips).
    document.addEventListener("click", function (event) {
      var trigger = event.target && event.target.closest ? event.target.closest("[data-rag-ask]") : null;
      if (!trigger) return;
      event.preventDefault();
      api.ask(trigger.getAttribute("data-rag-ask"));
    });
    return widget;
  }

  var widget = null;
  var api = {
    /** Ask a question as if typed (opens the launcher panel). */
    ask: function (question) {
      if (!widget || widget.busy()) return; // never overwrite what the user is typing mid-answer
      widget.setOpen(true, false);
      widget.input.value = question;
      widget.updateComposer();
      widget.submit();
    },
    open: function () { if (widget) widget.setOpen(true, true); },
    close: function () { if (widget) widget.setOpen(false, true); },
    clear: function () { if (widget) widget.clear(); },
  };
  window.RagChat = api;

  function start() { widget = mount(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
