// glmv web chat: talks to the server's own Z.AI endpoint, streams answers, folds the thinking,
// draws grounding boxes over the image, shows HTML answers live. No dependencies, works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], attachments: [], lastImage: null, info: null, busy: false };
const BOX = /\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]/g;
const BOX_TOKENS = /<\|(begin|end)_of_box\|>/g;

// ---------------------------------------------------------------------------------------------
// Server info: models, whether a key is needed, prices

async function loadInfo() {
  const response = await fetch("/health");
  state.info = await response.json();
  for (const name of state.info.models) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    $("model").append(option);
  }
  const key = $("key");
  key.hidden = !state.info.auth_required;
  key.value = localStorage.getItem("glmv-key") || "";
  key.addEventListener("change", () => localStorage.setItem("glmv-key", key.value.trim()));
}

// ---------------------------------------------------------------------------------------------
// Attachments: the file picker, drag and drop, paste

function kindOf(file) {
  if (file.type.startsWith("image/")) return "image";
  if (file.type.startsWith("video/")) return "video";
  if (file.type === "application/pdf") return "file";
  return null;
}

function addFiles(files) {
  for (const file of files) {
    const kind = kindOf(file);
    if (!kind) { showError(`${file.name}: attach images, videos or PDFs`); continue; }
    const reader = new FileReader();
    reader.onload = () => {
      state.attachments.push({ kind, name: file.name || `pasted.${file.type.split("/")[1]}`, url: reader.result });
      renderAttachments();
    };
    reader.readAsDataURL(file);
  }
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  state.attachments.forEach((a, i) => {
    const chip = el("span", "chip", `${a.kind}: ${a.name}`);
    const remove = el("button", null, "×");
    remove.type = "button";
    remove.title = "remove";
    remove.onclick = () => { state.attachments.splice(i, 1); renderAttachments(); };
    chip.append(remove);
    box.append(chip);
  });
}

// ---------------------------------------------------------------------------------------------
// Markdown (escaped first: model text never becomes markup of this page)

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function inline(text) {
  return escapeHtml(text)
    .replace(/&lt;\|begin_of_box\|&gt;/g, '<span class="box-token">⟦</span>')
    .replace(/&lt;\|end_of_box\|&gt;/g, '<span class="box-token">⟧</span>')
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
}

function cells(line) {
  return line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
}

function renderBlocks(text) {
  const lines = text.split("\n");
  const out = [];
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) { out.push(`<h${heading[1].length}>${inline(heading[2])}</h${heading[1].length}>`); i++; continue; }
    if (line.trim().startsWith("|") && i + 1 < lines.length && /^\s*\|?[\s:|-]+\|?\s*$/.test(lines[i + 1]) &&
        lines[i + 1].includes("-")) {
      const head = cells(line).map((c) => `<th>${inline(c)}</th>`).join("");
      const body = [];
      for (i += 2; i < lines.length && lines[i].trim().startsWith("|"); i++) {
        body.push("<tr>" + cells(lines[i]).map((c) => `<td>${inline(c)}</td>`).join("") + "</tr>");
      }
      out.push(`<table><thead><tr>${head}</tr></thead><tbody>${body.join("")}</tbody></table>`);
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+/;
    if (item.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const items = [];
      for (; i < lines.length && item.test(lines[i]); i++) items.push(`<li>${inline(lines[i].replace(item, ""))}</li>`);
      out.push(ordered ? `<ol>${items.join("")}</ol>` : `<ul>${items.join("")}</ul>`);
      continue;
    }
    const para = [];
    for (; i < lines.length && lines[i].trim() && !/^#{1,6}\s/.test(lines[i]) && !item.test(lines[i]); i++) {
      para.push(inline(lines[i]));
    }
    out.push(`<p>${para.join("<br>")}</p>`);
  }
  return out.join("");
}

function renderMarkdown(text) {
  const parts = text.split(/```/);
  return parts.map((part, i) => {
    if (i % 2 === 0) return renderBlocks(part);
    const newline = part.indexOf("\n");
    const lang = newline >= 0 ? part.slice(0, newline).trim() : "";
    const code = newline >= 0 ? part.slice(newline + 1) : part;
    return `<pre data-lang="${escapeHtml(lang)}"><button type="button" class="copy">Copy</button>` +
           `<code>${escapeHtml(code)}</code></pre>`;
  }).join("");
}

// ---------------------------------------------------------------------------------------------
// Grounding boxes and HTML answers

function boxesIn(text) {
  return [...text.matchAll(BOX)].map((m) => m.slice(1, 5).map(Number));
}

function drawBoxes(imageUrl, boxes) {
  const frame = el("div", "grounded");
  const img = document.createElement("img");
  img.src = imageUrl;
  img.alt = "the image, with the boxes of the answer";
  frame.append(img);
  const clamp = (v) => Math.min(100, Math.max(0, v / 10));
  boxes.forEach(([x1, y1, x2, y2], i) => {
    const box = el("div", "box");
    box.style.left = `${clamp(x1)}%`;
    box.style.top = `${clamp(y1)}%`;
    box.style.width = `${clamp(x2) - clamp(x1)}%`;
    box.style.height = `${clamp(y2) - clamp(y1)}%`;
    box.append(el("span", null, String(i + 1)));
    frame.append(box);
  });
  return frame;
}

function htmlOf(text) {
  const fenced = [...text.matchAll(/```(?:html|HTML)[ \t]*\n([\s\S]*?)```/g)].map((m) => m[1]);
  if (fenced.length) return fenced.reduce((a, b) => (b.length > a.length ? b : a));
  const raw = text.search(/<!doctype html|<html[\s>]/i);
  return raw >= 0 ? text.slice(raw) : null;
}

function htmlPreview(html) {
  const grid = el("div", "html-answer");
  const code = el("pre", null);
  code.append(el("code", null, html));
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");  // no same-origin: the page cannot reach glmv or the key
  frame.title = "live preview of the HTML answer";
  frame.srcdoc = html;
  grid.append(code, frame);
  return grid;
}

// ---------------------------------------------------------------------------------------------
// Conversation

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollDown() { $("messages").scrollTop = $("messages").scrollHeight; }

function showError(message) {
  $("messages").append(el("div", "msg error", message));
  scrollDown();
}

function userBubble(text, attachments) {
  const bubble = el("div", "msg user");
  if (attachments.length) {
    const media = el("div", "media");
    for (const a of attachments) {
      if (a.kind === "image") { const img = document.createElement("img"); img.src = a.url; img.alt = a.name; media.append(img); }
      else if (a.kind === "video") { const v = document.createElement("video"); v.src = a.url; v.controls = true; media.append(v); }
      else media.append(el("span", "chip", `PDF: ${a.name}`));
    }
    bubble.append(media);
  }
  bubble.append(el("div", null, text));
  $("messages").append(bubble);
}

function part(a) {
  const type = { image: "image_url", video: "video_url", file: "file_url" }[a.kind];
  return { type, [type]: { url: a.url } };
}

function cost(usage) {
  const p = state.info?.prices;
  if (!p || !usage) return "";
  const cached = usage.prompt_tokens_details?.cached_tokens || 0;
  const dollars = ((usage.prompt_tokens - cached) * p.input + cached * p.input * p.cached_ratio +
                   usage.completion_tokens * p.output) / 1e6;
  return ` · $${dollars.toFixed(6)}`;
}

async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("input").value.trim();
  if (state.busy || (!text && !state.attachments.length)) return;
  $("hint")?.remove();
  const attachments = state.attachments.splice(0);
  renderAttachments();
  $("input").value = "";
  userBubble(text, attachments);
  const image = attachments.filter((a) => a.kind === "image").pop();
  if (image) state.lastImage = image.url;
  const content = attachments.length ? [...attachments.map(part), { type: "text", text }] : text;
  state.history.push({ role: "user", content });

  const bubble = el("div", "msg assistant");
  const thinking = el("details", "thinking");
  thinking.open = true;
  thinking.hidden = true;
  const summary = el("summary", null, "Thinking…");
  const thought = el("div", "text");
  thinking.append(summary, thought);
  const answer = el("div", "answer");
  const usageLine = el("div", "usage");
  bubble.append(thinking, answer, usageLine);
  $("messages").append(bubble);

  state.busy = true;
  $("send").disabled = true;
  let reasoning = "", reply = "", usage = null;
  try {
    const headers = { "Content-Type": "application/json" };
    const key = $("key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch("/api/paas/v4/chat/completions", {
      method: "POST", headers,
      body: JSON.stringify({ model: $("model").value, messages: state.history, stream: true,
                             thinking: { type: $("thinking").checked ? "enabled" : "disabled" } }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? `${body.error.message} (code ${body.error.code})` : `HTTP ${response.status}`);
    }
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(`${chunk.error.message} (code ${chunk.error.code})`);
      const choice = (chunk.choices || [])[0] || {};
      const delta = choice.delta || {};
      if (delta.reasoning_content) {
        reasoning += delta.reasoning_content;
        thinking.hidden = false;
        thought.textContent = reasoning;
      }
      if (delta.content) {
        reply += delta.content;
        if (thinking.open && reasoning) { thinking.open = false; summary.textContent = "Thinking (click to show)"; }
        answer.innerHTML = renderMarkdown(reply);
      }
      usage = choice.usage || chunk.usage || usage;
      scrollDown();
    }
    state.history.push({ role: "assistant", content: reply });
    if (reasoning) { thinking.open = false; summary.textContent = "Thinking (click to show)"; }
    const boxes = boxesIn(reply.replace(BOX_TOKENS, " "));
    if (boxes.length && state.lastImage) answer.append(drawBoxes(state.lastImage, boxes));
    const html = htmlOf(reply);
    if (html) answer.append(htmlPreview(html));
    if (usage) usageLine.textContent = `${usage.prompt_tokens} in · ${usage.completion_tokens} out tokens${cost(usage)}`;
  } catch (error) {
    state.history.pop();  // the question was not answered: ask it again later
    bubble.remove();
    showError(String(error.message || error));
  } finally {
    state.busy = false;
    $("send").disabled = false;
    bubble.dataset.done = "true";
    scrollDown();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

document.addEventListener("DOMContentLoaded", () => {
  loadInfo().catch((error) => showError(`cannot reach the server: ${error}`));
  $("composer").addEventListener("submit", send);
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("clear").addEventListener("click", () => {
    state.history = []; state.lastImage = null;
    $("messages").replaceChildren();
  });
  document.addEventListener("paste", (e) => { if (e.clipboardData.files.length) addFiles(e.clipboardData.files); });
  let depth = 0;
  window.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; $("drop").hidden = false; });
  window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("drop").hidden = true; } });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault(); depth = 0; $("drop").hidden = true;
    addFiles(e.dataTransfer.files);
  });
  $("messages").addEventListener("click", (e) => {
    if (!e.target.classList.contains("copy")) return;
    navigator.clipboard?.writeText(e.target.nextElementSibling.textContent);
    e.target.textContent = "Copied";
    setTimeout(() => { e.target.textContent = "Copy"; }, 1500);
  });
});
