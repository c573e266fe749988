// bridge console: confirmations for actions and the live journal. No framework, no build step.
"use strict";
document.addEventListener("submit", (ev) => {
  const form = ev.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) ev.preventDefault();
});

function journalRow(line) {
  const tr = document.createElement("tr");
  const cells = [String(line.id), line.at.slice(0, 19).replace("T", " "), line.kind, "", line.message || ""];
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    if (i === 3 && line.href) {
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

function startJournal(table) {
  const body = table.querySelector("tbody");
  const state = document.getElementById("journal-state");
  let last = null;
  async function poll() {
    try {
      const q = last === null ? "" : `?after=${last}`;
      const resp = await fetch(table.dataset.src + q, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const data = await resp.json();
      data.lines.forEach((line) => body.prepend(journalRow(line)));
      while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
      last = data.last;
      state.textContent = `已更新 updated ${new Date().toLocaleTimeString()} · ${body.rows.length} 行 lines`;
    } catch (err) {
      state.textContent = `更新失败 update failed: ${err.message}`;
    }
    window.setTimeout(poll, 2000);
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("journal");
  if (table) startJournal(table);
});
