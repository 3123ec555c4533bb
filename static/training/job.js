// The job page: refreshes progress and the log tail while the job is active;
// reloads once when its state changes (buttons, attempts and artifacts follow).
(function () {
  "use strict";
  const root = document.getElementById("job-page");
  if (!root) return;
  const active = ["waiting", "queued", "running"];
  const state = document.getElementById("job-state");
  const bar = document.getElementById("job-progress");
  const steps = document.getElementById("job-steps");
  const loss = document.getElementById("job-loss");
  const eta = document.getElementById("job-eta");
  const log = document.getElementById("job-log");

  function show(job) {
    if (job.state !== root.dataset.state) { window.location.reload(); return false; }
    state.textContent = job.state_label + (job.cancel_requested && job.state === "running" ? " (cancelling)" : "") +
      (job.recovery ? " — " + job.recovery : "");
    bar.value = job.percent;
    steps.textContent = job.total ? job.step + " of " + job.total : "";
    loss.textContent = job.loss == null ? "—" : Number(job.loss).toFixed(4);
    eta.textContent = window.attuneFormatEta(job.eta_seconds) || "—";
    const text = job.log_tail || "(nothing logged yet)";
    if (log.textContent !== text) {
      // Follow the end of the log only when the reader is already there.
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = text;
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    return active.includes(job.state);
  }

  function loop() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (job) { if (show(job)) setTimeout(loop, 2000); })
      .catch(function () { setTimeout(loop, 5000); });
  }
  log.scrollTop = log.scrollHeight;
  if (active.includes(root.dataset.state)) loop();
})();
