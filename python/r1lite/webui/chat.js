// r1lite's browser chat: streams from this server's /v1/chat/completions (relative URLs only,
// so nothing leaves the machine), shows the reasoning in a "Thinking" section apart from the
// answer, and keeps the conversation in localStorage. Plain JS, no library: the Markdown
// renderer below is small and escapes every character of model text before adding its own tags.
"use strict";

const STORE = { chat: "r1lite.chat", settings: "r1lite.settings", key: "r1lite.apiKey" };
const $ = (id) => document.getElementById(id);

// -- Markdown ---------------------------------------------------------------------------------

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function escapeHtml(s) { return s.replace(/[&<>"']/g, (c) => ESCAPES[c]); }

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(\s+|$)/;
const TABLE_SEP = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function isBlockStart(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

// Markdown source -> HTML: fenced code (with a copy button), headings, lists, quotes, tables,
// rules, paragraphs; inline code, bold, italic, strikethrough, links. Unknown syntax stays text.
function markdown(src) {
  const lines = src.replace(/\r\n?/g, "\n").replace(/\u0000/g, "").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      const close = new RegExp("^ {0,3}" + (m[1][0] === "`" ? "`" : "~") + "{" + m[1].length + ",}\\s*$");
      const body = [];
      for (i++; i < lines.length && !close.test(lines[i]); i++) body.push(lines[i]);
      i++;  // the closing fence (absent while the answer still streams)
      out.push(codeBlock(body.join("\n"), m[2]));
    } else if (/^\s*$/.test(line)) {
      i++;
    } else if ((m = HEADING.exec(line))) {
      const n = m[1].length;
      out.push(`<h${n}>${inline(m[2])}</h${n}>`);
      i++;
    } else if (RULE.test(line)) {
      out.push("<hr>");
      i++;
    } else if (QUOTE.test(line)) {
      const body = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i++) body.push(lines[i].replace(QUOTE, ""));
      out.push(`<blockquote>${markdown(body.join("\n"))}</blockquote>`);
    } else if (ITEM.test(line)) {
      i = list(lines, i, out);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])
               && lines[i + 1].includes("-")) {
      i = table(lines, i, out);
    } else {
      const para = [];
      for (; i < lines.length && !/^\s*$/.test(lines[i]) && (para.length === 0 || !isBlockStart(lines[i])); i++) {
        para.push(lines[i].trim());
      }
      out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    }
  }
  return out.join("\n");
}

function codeBlock(code, lang) {
  const name = (lang || "").replace(/[^\w+#.-]/g, "").slice(0, 30);
  const cls = name ? ` class="language-${name}"` : "";
  return `<div class="code"><div class="code-bar"><span>${name || "code"}</span>` +
         `<button type="button" class="copy">Copy</button></div>` +
         `<pre><code${cls}>${escapeHtml(code)}</code></pre></div>`;
}

// A list starting at lines[i]; items hold their continuation lines (indented, or after a blank
// line when indented), rendered again as Markdown so lists nest. Returns the next line's index.
function list(lines, i, out) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const items = [];
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || /\d/.test(m[2]) !== ordered || m[1].length > first[1].length + 1) break;
    const indent = m[0].length;
    const body = [lines[i].slice(indent)];
    for (i++; i < lines.length; i++) {
      const l = lines[i];
      if (/^\s*$/.test(l)) {
        if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) { body.push(""); continue; }
        break;
      }
      if (/^\s{2,}\S/.test(l)) { body.push(l.replace(new RegExp("^ {0," + Math.max(indent, 2) + "}"), "")); continue; }
      if (ITEM.test(l) || isBlockStart(l)) break;
      body.push(l);  // a lazy continuation line
    }
    let html = markdown(body.join("\n"));
    const single = /^<p>([\s\S]*?)<\/p>(\n?)([\s\S]*)$/.exec(html);
    if (single && !single[1].includes("<p>")) html = single[1] + (single[3] ? "\n" + single[3] : "");
    items.push(`<li>${html}</li>`);
    while (i < lines.length && /^\s*$/.test(lines[i]) && i + 1 < lines.length && ITEM.test(lines[i + 1])) i++;
  }
  const start = ordered ? parseInt(first[2], 10) : 1;
  const tag = ordered ? "ol" : "ul";
  out.push(`<${tag}${ordered && start !== 1 ? ` start="${start}"` : ""}>${items.join("")}</${tag}>`);
  return i;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function table(lines, i, out) {
  const head = cells(lines[i]);
  const align = cells(lines[i + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : "");
  const cell = (tag, text, k) => `<${tag}${align[k] ? ` class="align-${align[k]}"` : ""}>${inline(text)}</${tag}>`;
  const rows = [`<tr>${head.map((c, k) => cell("th", c, k)).join("")}</tr>`];
  for (i += 2; i < lines.length && lines[i].includes("|") && !/^\s*$/.test(lines[i]); i++) {
    rows.push(`<tr>${head.map((_, k) => cell("td", cells(lines[i])[k] || "", k)).join("")}</tr>`);
  }
  out.push(`<table>${rows.join("")}</table>`);
  return i;
}

const SAFE_URL = /^(https?:\/\/|mailto:|#|\/(?!\/))/i;

// Inline Markdown of one line: the text is escaped first; code spans and links are set aside
// (placeholders \u0000N\u0000) so that emphasis never reaches into them.
function inline(text) {
  const kept = [];
  const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
  let s = escapeHtml(text);
  s = s.replace(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => keep(`<code>${code.trim() || code}</code>`));
  s = s.replace(/\[([^\]\u0000]+)\]\(([^)\s]+)\)/g, (whole, label, url) =>
    SAFE_URL.test(url) ? keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`) : whole);
  s = s.replace(/\bhttps?:\/\/[^\s<\u0000]*[^\s<\u0000.,;:!?)\]'"&]/g, (url) =>
    keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${url}</a>`));
  s = emphasis(s);
  for (let n = 0; n < 3 && s.includes("\u0000"); n++) s = s.replace(/\u0000(\d+)\u0000/g, (_, k) => kept[+k]);
  return s;
}

function emphasis(s) {
  return s
    .replace(/\*\*(?!\s)(.+?)(?<!\s)\*\*/g, "<strong>$1</strong>")
    .replace(/(?<![\w_])__(?!\s)(.+?)(?<!\s)__(?![\w_])/g, "<strong>$1</strong>")
    .replace(/(?<![*\w\\])\*(?![\s*])(.+?)(?<![\s*\\])\*(?![*\w])/g, "<em>$1</em>")
    .replace(/(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])/g, "<em>$1</em>")
    .replace(/~~(?!\s)(.+?)(?<!\s)~~/g, "<del>$1</del>");
}

// -- storage ----------------------------------------------------------------------------------

function load(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch (e) {
    return fallback;
  }
}
function save(key, value) {
  try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* full or disabled */ }
}

// turns: {role: "user", content} | {role: "assistant", content, reasoning, status
//   ("streaming" | "done" | "stopped" | "error"), error, thinkMs, thinkTokens, usage}
let turns = load(STORE.chat, []);
if (!Array.isArray(turns)) turns = [];
for (const t of turns) if (t.status === "streaming") t.status = "stopped";  // the page was left mid-answer
let settings = Object.assign({ system: "", temperature: "", top_p: "", max_tokens: "", max_thinking_tokens: "" },
                             load(STORE.settings, {}));
let apiKey = load(STORE.key, null);
let modelId = null;
let running = null;  // {controller, turn, view} while an answer streams

function saveChat() { save(STORE.chat, turns); }

// -- rendering --------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const FINISHES = { length: " · stopped at the token limit",
                   repetition: " · stopped: the text was repeating itself (loop guard)" };

function seconds(ms) { return (ms / 1000).toFixed(1) + " s"; }

// The DOM of one assistant turn, with update() to redraw it from the turn's fields.
function assistantView(turn) {
  const root = el("div", "msg assistant");
  const thinking = el("details", "thinking");
  const summary = el("summary");
  const label = el("span", "label");
  const meta = el("span", "meta");
  summary.append(label, meta);
  const reasoning = el("div", "reasoning");
  thinking.append(summary, reasoning);
  const answer = el("div", "answer");
  const foot = el("div", "usage");
  const error = el("div", "error");
  root.append(thinking, answer, error, foot);
  let shownAnswer = null;
  let auto = true;  // until the answer starts or the reader folds or unfolds it by hand
  summary.addEventListener("click", () => { auto = false; });

  function update() {
    root.dataset.status = turn.status;
    const hasReasoning = !!turn.reasoning;
    thinking.hidden = !hasReasoning;
    if (hasReasoning) {
      const text = turn.reasoning.trim();
      if (reasoning.textContent !== text) reasoning.textContent = text;
      const streaming = turn.status === "streaming" && !turn.content;
      label.textContent = streaming ? "Thinking" : turn.status === "stopped" && !turn.content ? "Stopped while thinking" : "Thought";
      const parts = [];
      if (turn.thinkTokens) parts.push(`${turn.thinkTokens} token${turn.thinkTokens === 1 ? "" : "s"}`);
      if (turn.thinkMs != null) parts.push(seconds(turn.thinkMs));
      meta.textContent = parts.length ? " · " + parts.join(", ") : "";
      if (auto) {  // open while the reasoning streams, folded once the answer starts
        thinking.open = streaming;
        if (!streaming) auto = false;
      }
    }
    if (shownAnswer !== turn.content) {
      answer.innerHTML = markdown(turn.content || "");
      shownAnswer = turn.content;
    }
    error.hidden = !turn.error;
    error.textContent = turn.error || "";
    const u = turn.usage;
    if (u) {
      foot.textContent = `${u.prompt_tokens} prompt tokens · ${u.completion_tokens} generated` +
                         (u.tok_s ? ` · ${u.tok_s.toFixed(1)} tok/s` : "") +
                         (FINISHES[turn.finish] ?? (turn.finish && turn.finish !== "stop" ? ` · finish: ${turn.finish}` : ""));
    } else {
      foot.textContent = turn.status === "stopped" ? "stopped" : "";
    }
    foot.hidden = !foot.textContent;
  }
  update();
  return { root, update, thinking };
}

function userView(turn) {
  const root = el("div", "msg user");
  root.append(el("div", "bubble", turn.content));
  return root;
}

function renderAll() {
  const log = $("log");
  log.replaceChildren();
  if (!turns.length) {
    const hint = el("p", null, "Ask something. Enter sends, Shift+Enter starts a new line, Escape stops the answer.");
    hint.id = "empty-hint";
    log.append(hint);
  }
  for (const t of turns) log.append(t.role === "user" ? userView(t) : assistantView(t).root);
  log.scrollTop = log.scrollHeight;
}

function nearBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function setRunning(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
}

// -- talking to the server --------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey) h.Authorization = "Bearer " + apiKey;
  return h;
}

function number(value, integer) {
  if (value === "" || value === null || value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) return undefined;
  return integer ? Math.round(n) : n;
}

// What is sent: the system prompt, then every turn's text (not a question whose request failed);
// earlier reasoning stays here.
function requestBody() {
  const messages = [];
  if (settings.system.trim()) messages.push({ role: "system", content: settings.system });
  turns.forEach((t, i) => {
    const reply = turns[i + 1];
    if (t === running?.turn || t.status === "error") return;
    if (t.role === "user" && reply?.status === "error") return;  // never answered: left out
    messages.push({ role: t.role, content: t.content || "" });
  });
  const body = { messages, stream: true, stream_options: { include_usage: true } };
  if (modelId) body.model = modelId;
  const fields = { temperature: number(settings.temperature), top_p: number(settings.top_p),
                   max_tokens: number(settings.max_tokens, true),
                   max_thinking_tokens: number(settings.max_thinking_tokens, true) };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body[k] = v;
  return body;
}

async function errorText(resp) {
  try {
    const j = await resp.json();
    return j.error?.message || `HTTP ${resp.status}`;
  } catch (e) {
    return `HTTP ${resp.status}`;
  }
}

async function send() {
  const input = $("input");
  const text = input.value;
  if (!text.trim() || running) return;
  input.value = "";
  autosize();
  const user = { role: "user", content: text };
  const turn = { role: "assistant", content: "", reasoning: "", status: "streaming", thinkTokens: 0 };
  turns.push(user, turn);
  saveChat();
  const log = $("log");
  $("empty-hint")?.remove();
  log.append(userView(user));
  const view = assistantView(turn);
  log.append(view.root);
  log.scrollTop = log.scrollHeight;
  const controller = new AbortController();
  running = { controller, turn, view };
  setRunning(true);
  const t0 = performance.now();
  let tFirst = null;
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const stick = nearBottom();
      view.update();
      if (stick) log.scrollTop = log.scrollHeight;
      saveChat();
    });
  };
  try {
    const resp = await fetch("v1/chat/completions", { method: "POST", headers: headers(),
                                                       body: JSON.stringify(requestBody()),
                                                       signal: controller.signal });
    if (!resp.ok) {
      if (resp.status === 401) askKey(true);
      throw new Error(await errorText(resp));
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    const onEvent = (data) => {
      if (data === "[DONE]") { finished = true; return; }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server failed");
      if (chunk.usage) {
        const secs = tFirst === null ? 0 : (performance.now() - tFirst) / 1000;
        turn.usage = { prompt_tokens: chunk.usage.prompt_tokens, completion_tokens: chunk.usage.completion_tokens,
                       tok_s: secs > 0 ? chunk.usage.completion_tokens / secs : 0 };
      }
      for (const choice of chunk.choices || []) {
        const d = choice.delta || {};
        if (d.reasoning_content) {
          tFirst ??= performance.now();
          turn.reasoning += d.reasoning_content;
          turn.thinkTokens += 1;  // one delta per generated token (fewer only where the server
                                  // holds text back, e.g. a character split across tokens)
          turn.thinkMs = performance.now() - t0;
        }
        if (d.content) {
          tFirst ??= performance.now();
          turn.content += d.content;
        }
        // r1lite's own reason where OpenAI's finish_reason has none (e.g. "repetition")
        if (choice.finish_reason) turn.finish = choice.r1lite_finish_detail || choice.finish_reason;
      }
    };
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) if (line.startsWith("data:")) onEvent(line.slice(5).trim());
        redraw();
      }
    }
    turn.status = "done";
  } catch (e) {
    if (controller.signal.aborted) {
      turn.status = "stopped";
    } else {
      turn.status = "error";
      turn.error = e.message || String(e);
    }
  } finally {
    running = null;
    setRunning(false);
    view.update();
    saveChat();
    input.focus();
  }
}

function stop() {
  if (running) running.controller.abort();  // the server sees the connection close and frees the slot
}

function newChat() {
  stop();
  turns = [];
  saveChat();
  renderAll();
  $("input").focus();
}

async function fetchModel() {
  let resp;
  try {
    resp = await fetch("v1/models", { headers: headers() });
  } catch (e) {
    return;
  }
  if (resp.status === 401) {
    askKey(apiKey !== null);
    return;
  }
  if (!resp.ok) return;
  const j = await resp.json();
  modelId = j.data?.[0]?.id || null;
  $("model-name").textContent = modelId || "";
}

function askKey(refused) {
  $("key-error").hidden = !refused;
  $("key-dialog").hidden = false;
  $("key-input").focus();
}

// -- wiring -----------------------------------------------------------------------------------

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight + 2, window.innerHeight * 0.4) + "px";
}

const SETTING_INPUTS = { system: "set-system", temperature: "set-temperature", top_p: "set-top-p",
                         max_tokens: "set-max-tokens", max_thinking_tokens: "set-thinking" };

function copyText(text, button) {
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text) && done());
  } else if (fallbackCopy(text)) {
    done();
  }
}

function fallbackCopy(text) {  // plain http on another host: no clipboard API
  const area = el("textarea");
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  area.remove();
  return ok;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const [name, id] of Object.entries(SETTING_INPUTS)) {
    const input = $(id);
    input.value = settings[name] ?? "";
    const keep = () => { settings[name] = input.value; save(STORE.settings, settings); };
    input.addEventListener("input", keep);
    input.addEventListener("change", keep);
  }
  $("settings-toggle").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  });
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  const input = $("input");
  input.addEventListener("input", autosize);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && running) {
      e.preventDefault();
      stop();
    }
  });
  $("log").addEventListener("click", (e) => {
    const button = e.target.closest("button.copy");
    if (button) copyText(button.closest(".code").querySelector("code").textContent, button);
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    apiKey = key;
    save(STORE.key, apiKey);
    $("key-input").value = "";
    $("key-dialog").hidden = true;
    fetchModel();
  });
  renderAll();
  fetchModel();
  input.focus();
});
