// Live job table on the experiment page: polls the JSON status endpoint.
(function () {
  "use strict";
  const root = document.getElementById("job-status");
  if (!root) return;
  const statusUrl = root.dataset.statusUrl;
  const csrf = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value;
  const rows = document.getElementById("job-rows");
  const overall = document.getElementById("experiment-state");

  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
  function fmtEta(s) { if (s == null) return ""; s = Math.round(s); return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s"; }

  function actionButton(label, urlTemplate, jobId) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.className = "button job-" + label.toLowerCase();
    button.addEventListener("click", function () {
      fetch(urlTemplate.replace("/0/", "/" + jobId + "/"), {
        method: "POST", headers: { "X-CSRFToken": csrf, "Accept": "application/json" }, credentials: "same-origin",
      }).then(refresh);
    });
    return button;
  }

  function render(data) {
    overall.textContent = "Experiment " + data.state + ".";
    rows.replaceChildren();
    data.jobs.forEach(function (job) {
      const tr = document.createElement("tr");
      tr.dataset.jobKey = job.key;
      const keyCell = document.createElement("td");
      const link = document.createElement("a");
      link.href = "../../job/" + job.id + "/change/";
      link.textContent = job.key;
      keyCell.appendChild(link);
      tr.appendChild(keyCell);
      tr.appendChild(cell(job.queue));
      const state = cell(job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : ""));
      state.className = "state-" + job.state;
      tr.appendChild(state);
      const progressCell = document.createElement("td");
      const bar = document.createElement("progress");
      bar.max = 100; bar.value = job.percent;
      bar.setAttribute("aria-label", job.key + " progress");
      progressCell.appendChild(bar);
      progressCell.appendChild(document.createTextNode(job.total ? " " + job.step + " of " + job.total : ""));
      tr.appendChild(progressCell);
      tr.appendChild(cell(job.loss == null ? "" : Number(job.loss).toFixed(4)));
      tr.appendChild(cell(job.state === "running" ? fmtEta(job.eta_seconds) : ""));
      const actions = document.createElement("td");
      if (["waiting", "queued", "running"].includes(job.state)) actions.appendChild(actionButton("Cancel", root.dataset.cancelUrl, job.id));
      if (["failed", "cancelled"].includes(job.state)) actions.appendChild(actionButton("Retry", root.dataset.retryUrl, job.id));
      if (job.log_tail || job.error) {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = job.error ? "error and log" : "log";
        const pre = document.createElement("pre");
        pre.textContent = (job.error ? job.error + "\n\n" : "") + job.log_tail;
        details.appendChild(summary); details.appendChild(pre);
        actions.appendChild(details);
      }
      tr.appendChild(actions);
      rows.appendChild(tr);
    });
    return data;
  }

  function refresh() {
    return fetch(statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); }).then(render);
  }
  function loop() {
    refresh().then(function (data) {
      const active = data.jobs.some(function (j) { return ["waiting", "queued", "running"].includes(j.state); });
      setTimeout(loop, active ? 2000 : 10000);
    }).catch(function () { setTimeout(loop, 5000); });
  }
  loop();
})();
