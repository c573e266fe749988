// bridge console: confirmations for actions, times in the browser's zone, the live approval page and journal.
// No framework, no build step. Without this script every page still works: times read in UTC, nothing refreshes.
"use strict";

const POLL_MS = 2000;

document.addEventListener("submit", (ev) => {
  const form = ev.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) ev.preventDefault();
});

// --- times: <time datetime="ISO"> as written by the server (UTC), shown in the browser's own time zone ---
const pad = (n) => String(n).padStart(2, "0");

function zoneLabel(d) {
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  const abs = Math.abs(off);
  let name = "";
  try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { /* no Intl zone */ }
  return `${name ? name + " " : ""}UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function localText(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function utcText(d) {
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function localise(root) {
  root.querySelectorAll("time[datetime]:not([data-local])").forEach((el) => {
    const d = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(d.getTime())) return;
    el.textContent = localText(d);
    el.title = `${utcText(d)} · 本地 local ${zoneLabel(d)}`;
    el.dataset.local = "1";
  });
}

function timeElement(iso) {
  const el = document.createElement("time");
  el.setAttribute("datetime", iso);
  el.textContent = iso;
  return el;
}

// --- the live journal: what bridge tail --follow shows. The server's cursor says which lines this page has;
// a line that commits late (below ids already shown, on PostgreSQL) still comes, and takes its place by id ---
function journalRow(line) {
  const tr = document.createElement("tr");
  tr.dataset.id = String(line.id);
  const cells = [String(line.id), null, line.kind, null, line.message || ""];
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    if (i === 1) {
      td.appendChild(timeElement(line.at));
    } else if (i === 3 && line.href) {
      const a = document.createElement("a");
      a.href = line.href;
      a.textContent = `${line.source}/${line.approval_id}`;
      td.appendChild(a);
    } else {
      td.textContent = i === 3 ? (line.source || "") : text;
    }
    if (i === 2) td.className = "kind";
    tr.appendChild(td);
  });
  return tr;
}

function placeRow(body, tr) {  // newest (highest id) on top
  const id = Number(tr.dataset.id);
  const below = Array.from(body.rows).find((row) => Number(row.dataset.id) < id);
  body.insertBefore(tr, below || null);
}

function startJournal(table) {
  const body = table.querySelector("tbody");
  const state = document.getElementById("journal-state");
  let cursor = null;
  async function poll() {
    let again = POLL_MS;
    try {
      const q = cursor === null ? "" : `?cursor=${encodeURIComponent(cursor)}`;
      const resp = await fetch(table.dataset.src + q, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const data = await resp.json();
      data.lines.forEach((line) => placeRow(body, journalRow(line)));
      while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
      localise(body);
      cursor = data.cursor;
      if (data.more) again = 0;  // more lines wait: fetch them now
      state.textContent = `已更新 updated ${localText(new Date())} · ${body.rows.length} 行 lines`;
    } catch (err) {
      state.textContent = `更新失败 update failed: ${err.message}`;
    }
    window.setTimeout(poll, again);
  }
  poll();
}

// --- a live page (one approval, the dead letters): its body again whenever it changed (ETag, 304 while not),
// so a card turns green by itself and a new dead job appears. Ticked boxes stay ticked across a swap (those
// whose row is still there); a row that left the list (retried elsewhere) takes its tick with it ---
function ticked(box) {
  return new Set(Array.from(box.querySelectorAll("input[type=checkbox]:checked"), (el) => `${el.name}=${el.value}`));
}

function retick(box, keep) {
  box.querySelectorAll("input[type=checkbox]").forEach((el) => {
    if (keep.has(`${el.name}=${el.value}`)) el.checked = true;
  });
}

function startLive(box) {
  const state = document.getElementById("live-state");
  let etag = box.dataset.etag || "";
  async function poll() {
    if (!document.hidden) {
      try {
        const resp = await fetch(box.dataset.live, {credentials: "same-origin",
          headers: etag ? {"If-None-Match": etag} : {}});
        if (resp.status === 200) {
          const text = await resp.text();
          const keep = ticked(box);  // read after the wait: the ticks of this moment
          box.innerHTML = text;
          retick(box, keep);
          etag = resp.headers.get("ETag") || "";
          localise(box);
        } else if (resp.status !== 304) {
          throw new Error(`HTTP ${resp.status}`);
        }
        if (state) state.textContent = `自动更新 live · ${localText(new Date())}`;
      } catch (err) {
        if (state) state.textContent = `更新失败 update failed: ${err.message}`;
      }
    }
    window.setTimeout(poll, POLL_MS);
  }
  window.setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  localise(document);
  const table = document.getElementById("journal");
  if (table) startJournal(table);
  const live = document.querySelector("[data-live]");
  if (live) startLive(live);
});
