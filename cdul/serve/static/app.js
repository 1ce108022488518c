// cdul-serve: searching by an uploaded image (its bytes go as the request body to the JSON API).
"use strict";

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function chips(names, marks) {
  if (!names.length) return "<span class='none'>none</span>";
  const shown = names.slice(0, 6).map((n) => `<span class='chip ${marks[n] || ""}'>${escapeHtml(n)}</span>`).join("");
  return names.length > 6 ? `${shown}<span class='none'> +${names.length - 6} more</span>` : shown;
}

function card(s, c) {
  const marks = {};
  if (c.truth) c.decided.forEach((n) => (marks[n] = (c.wrong || []).includes(n) ? "wrong" : "right"));
  const missed = {};
  (c.missed || []).forEach((n) => (missed[n] = "missed"));
  const truth = c.truth ? `<div class='labels'><b>truth</b> ${chips(c.truth, missed)}</div>` : "";
  return `<a class='card' href='/s/${s}/image/${c.row}'><img src='/api/s/${s}/thumb/${c.row}?size=160' alt='${escapeHtml(c.id)}'>` +
    `<div class='score'>${c.score.toFixed(3)}</div><div class='id'>${escapeHtml(c.id)}</div>` +
    `<div class='labels'><b>decided</b> ${chips(c.decided, marks)}</div>${truth}</a>`;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.image.files[0];
    const out = document.getElementById("results");
    if (!file) { out.innerHTML = "<p class='warn'>choose an image file first</p>"; return; }
    const s = form.dataset.store;
    const reply = await fetch(`/api/s/${s}/search`, { method: "POST", body: file });
    const data = await reply.json();
    if (!reply.ok) { out.innerHTML = `<p class='warn'>${escapeHtml(data.error)}</p>`; return; }
    out.innerHTML = `<h2>images like ${escapeHtml(file.name)}</h2><div class='grid'>` +
      data.results.map((c) => card(s, c)).join("") + "</div>";
  });
});
