// A small Markdown renderer that builds DOM nodes and sets only text: the model's text
// never reaches an HTML parser, so `<script>`, `<img onerror>` or any raw HTML in a
// reply shows as the characters it is. Links keep only http(s) and mailto targets.
// Covers what chat replies use: paragraphs, headings, lists, quotes, rules, fenced
// code (with a copy button), inline code, bold, italics, links and bare URLs.

import { el } from "./dom.js";

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const MAX_DEPTH = 8; // nested quotes and emphasis; deeper text is shown plainly

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^ {0,3}([-*+]|\d{1,9}[.)])\s+/;

export function safeUrl(raw) {
  try {
    const url = new URL(raw.trim());
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null; // relative or malformed: not a link
  }
}

function link(href, label, depth) {
  const a = el("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  appendInline(a, label, depth + 1);
  return a;
}

// The index of `marker` closing a span opened just before `from`, or -1.
function closing(text, marker, from) {
  let at = text.indexOf(marker, from);
  while (at > from && text[at - 1] === "\\") at = text.indexOf(marker, at + 1);
  return at > from && text[at - 1] !== " " ? at : -1;
}

// Appends `text` with inline Markdown to `parent` as elements and text nodes.
export function appendInline(parent, text, depth = 0) {
  if (depth > MAX_DEPTH) { parent.append(text); return; }
  let plain = "";
  const flush = () => { if (plain) parent.append(plain); plain = ""; };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const c = text[i];
    if (c === "\\" && /^\\[\\`*_[\]()#+\-.!>~|<]/.test(rest)) { plain += text[i + 1]; i += 2; continue; }
    if (c === "`") {
      const ticks = rest.match(/^`+/)[0];
      const end = text.indexOf(ticks, i + ticks.length);
      if (end > 0) {
        flush();
        parent.append(el("code", null, text.slice(i + ticks.length, end).replace(/^ (.+) $/, "$1")));
        i = end + ticks.length;
        continue;
      }
      plain += ticks; i += ticks.length; continue;
    }
    if ((c === "*" || c === "_") && rest.length > 2) {
      const strong = rest[1] === c;
      const marker = strong ? c + c : c;
      const start = i + marker.length;
      const end = text[start] !== " " ? closing(text, marker, start) : -1;
      const wordy = c === "_" && /\w/.test(text[i - 1] || ""); // snake_case is not emphasis
      if (end > start && !wordy) {
        flush();
        const span = el(strong ? "strong" : "em");
        appendInline(span, text.slice(start, end), depth + 1);
        parent.append(span);
        i = end + marker.length;
        continue;
      }
    }
    const linked = rest.match(/^!?\[([^\]\n]{0,500})\]\(([^()\s]{1,2000})(?:\s+"[^"]*")?\)/);
    if (linked) {
      flush();
      const href = safeUrl(linked[2]);
      const label = linked[1] || linked[2];
      // Images are shown as links: the page loads nothing a reply names.
      parent.append(href ? link(href, rest[0] === "!" ? `image: ${label}` : label, depth) : label);
      i += linked[0].length;
      continue;
    }
    const bare = /[\s(]$/.test(plain) || i === 0 ? rest.match(/^https?:\/\/[^\s<>"]+[^\s<>".,;:!?)'\]]/) : null;
    if (bare) {
      const href = safeUrl(bare[0]);
      if (href) {
        flush();
        parent.append(link(href, bare[0], MAX_DEPTH)); // the label as written, no Markdown
        i += bare[0].length;
        continue;
      }
    }
    plain += c;
    i += 1;
  }
  flush();
}

function codeBlock(code, language) {
  const figure = el("div", "code-block");
  const bar = el("div", "code-bar");
  bar.append(el("span", "code-language", language || "code"));
  const copy = el("button", "copy", "Copy");
  copy.type = "button";
  copy.setAttribute("aria-label", `Copy ${language || "code"} block`);
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });
  bar.append(copy);
  const pre = el("pre");
  const codeNode = el("code", null, code);
  if (language) codeNode.dataset.language = language;
  pre.append(codeNode);
  figure.append(bar, pre);
  return figure;
}

function paragraph(lines, depth) {
  const p = el("p");
  lines.forEach((line, n) => {
    if (n) p.append(el("br"));
    appendInline(p, line.trim(), depth);
  });
  return p;
}

const startsBlock = (line) => FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);

// Renders Markdown `text` into a new DocumentFragment.
export function render(text, depth = 0) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) { i += 1; continue; }
    if ((match = line.match(FENCE))) {
      const fence = match[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i += 1; // the closing fence (or the end of a reply still streaming)
      out.append(codeBlock(body.join("\n"), match[2]));
    } else if ((match = line.match(HEADING))) {
      const heading = el(`h${Math.min(6, match[1].length + 2)}`); // the page's own h1/h2 stay above
      appendInline(heading, match[2], depth);
      out.append(heading);
      i += 1;
    } else if (RULE.test(line)) {
      out.append(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].replace(QUOTE, ""));
      const quote = el("blockquote");
      if (depth < MAX_DEPTH) quote.append(render(quoted.join("\n"), depth + 1));
      else quote.append(quoted.join("\n"));
      out.append(quote);
    } else if ((match = line.match(ITEM))) {
      const ordered = /\d/.test(match[1]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(match[1], 10) !== 1) list.start = parseInt(match[1], 10);
      while (i < lines.length && (match = lines[i].match(ITEM)) && /\d/.test(match[1]) === ordered) {
        const item = [lines[i].slice(match[0].length)];
        i += 1;
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !ITEM.test(lines[i])) item.push(lines[i++]);
        const li = el("li");
        li.append(...paragraph(item, depth).childNodes);
        list.append(li);
      }
      out.append(list);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && (para.length === 0 || !startsBlock(lines[i]))) para.push(lines[i++]);
      out.append(paragraph(para, depth));
    }
  }
  return out;
}
