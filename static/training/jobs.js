// Live job table on the experiment page: polls the JSON status endpoint and
// updates each job's row in place, so an opened log stays open (and keeps its
// scroll position) while the job runs.
(function () {
  "use strict";
  const root = document.getElementById("job-status");
  if (!root) return;
  const statusUrl = root.dataset.statusUrl;
  const csrf = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value;
  const rows = document.getElementById("job-rows");
  const overall = document.getElementById("experiment-state");
  const active = ["waiting", "queued", "running"];

  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

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

  function buildRow(job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    tr.dataset.jobKey = job.key;
    // data-label: on a phone each row is a card, and each cell says what it is (jobs.css).
    tr.innerHTML = '<th scope="row"><a class="job-link"></a></th><td class="job-queue" data-label="Queue"></td>' +
      '<td class="job-state" data-label="State"></td>' +
      '<td class="job-progress" data-label="Progress"><progress max="100"></progress> <span class="job-steps"></span></td>' +
      '<td class="job-loss" data-label="Loss"></td><td class="job-eta" data-label="ETA"></td>' +
      '<td class="job-actions"><span class="job-buttons"></span>' +
      '<details class="job-log" hidden><summary></summary><pre tabindex="0"></pre></details></td>';
    const link = tr.querySelector(".job-link");
    link.href = job.url;
    link.textContent = job.key;
    tr.querySelector("progress").setAttribute("aria-label", job.key + " progress");
    return tr;
  }

  function updateRow(tr, job) {
    setText(tr.querySelector(".job-queue"), job.queue);
    const state = tr.querySelector(".job-state");
    setText(state, job.state + (job.cancel_requested && job.state === "running" ? " (cancelling)" : "") +
      (job.recovery ? " — " + job.recovery : ""));
    state.className = "job-state state-" + job.state;
    const bar = tr.querySelector("progress");
    bar.value = job.percent;  // always set: a progress element without a value shows as indeterminate
    setText(tr.querySelector(".job-steps"), job.total ? job.step + " of " + job.total : "");
    setText(tr.querySelector(".job-loss"), job.loss == null ? "" : Number(job.loss).toFixed(4));
    setText(tr.querySelector(".job-eta"), job.state === "running" ? window.attuneFormatEta(job.eta_seconds) : "");
    // Buttons change only with the state, so a focused button is not replaced under the pointer.
    const buttons = tr.querySelector(".job-buttons");
    const wanted = (job.can_cancel ? "cancel" : "") + (job.can_retry ? "retry" : "");
    if (buttons.dataset.shown !== wanted) {
      buttons.replaceChildren();
      if (job.can_cancel) buttons.appendChild(actionButton("Cancel", root.dataset.cancelUrl, job.id));
      if (job.can_retry) buttons.appendChild(actionButton("Retry", root.dataset.retryUrl, job.id));
      buttons.dataset.shown = wanted;
    }
    const details = tr.querySelector(".job-log");
    const text = (job.error ? job.error + "\n\n" : "") + job.log_tail;
    details.hidden = !text;
    setText(details.querySelector("summary"), job.error ? "error and log" : "log");
    const pre = details.querySelector("pre");
    if (pre.textContent !== text) {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  }

  function render(data) {
    setText(overall, "Experiment " + data.state + ".");
    const existing = {};
    Array.prototype.forEach.call(rows.children, function (tr) { existing[tr.dataset.jobId] = tr; });
    data.jobs.forEach(function (job, index) {
      let tr = existing[job.id];
      if (!tr) tr = buildRow(job);
      delete existing[job.id];
      if (rows.children[index] !== tr) rows.insertBefore(tr, rows.children[index] || null);
      updateRow(tr, job);
    });
    Object.keys(existing).forEach(function (id) { existing[id].remove(); });
    return data;
  }

  function refresh() {
    return fetch(statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); }).then(render);
  }
  function loop() {
    refresh().then(function (data) {
      const running = data.jobs.some(function (j) { return active.includes(j.state); });
      setTimeout(loop, running ? 2000 : 10000);
    }).catch(function () { setTimeout(loop, 5000); });
  }
  loop();
})();
