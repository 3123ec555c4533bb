/* Attune rating page: keyboard shortcuts, autosave of drafts, time on task.
   The page works without it (a plain form post); this only adds speed. */
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form) { return; }
  var fieldsets = Array.prototype.slice.call(form.querySelectorAll("fieldset.dimension"));
  var comment = document.getElementById("comment");
  var timeField = document.getElementById("time-on-task");
  var status = document.getElementById("autosave-status");
  var undoForm = document.getElementById("undo-form");
  var draftUrl = form.getAttribute("data-draft-url");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var current = 0;

  /* Time on task: time the page was visible, added to what earlier visits recorded. */
  var baseMs = parseInt(form.getAttribute("data-time-ms"), 10) || 0;
  var visibleSince = document.hidden ? null : Date.now();
  var visibleMs = 0;
  function elapsed() {
    var running = visibleSince === null ? 0 : Date.now() - visibleSince;
    return baseMs + visibleMs + running;
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (visibleSince !== null) { visibleMs += Date.now() - visibleSince; visibleSince = null; }
      saveDraft(true);
    } else {
      visibleSince = Date.now();
    }
  });

  function setStatus(text) { if (status) { status.textContent = text; } }

  function answers() {
    var choices = {};
    fieldsets.forEach(function (fs) {
      var checked = fs.querySelector("input[type=radio]:checked");
      if (checked) { choices[fs.getAttribute("data-dimension")] = checked.value; }
    });
    return {
      choices: choices,
      unsafe_left: document.getElementById("unsafe-left").checked,
      unsafe_right: document.getElementById("unsafe-right").checked,
      comment: comment ? comment.value : "",
      time_on_task_ms: elapsed()
    };
  }

  /* Autosave: post the draft shortly after every change. */
  var timer = null;
  var dirty = false;
  function saveDraft(now) {
    if (!draftUrl || !dirty) { return; }
    if (timer) { clearTimeout(timer); timer = null; }
    dirty = false;
    setStatus("Saving…");
    fetch(draftUrl, {
      method: "POST",
      credentials: "same-origin",
      keepalive: !!now,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
      body: JSON.stringify(answers())
    }).then(function (response) {
      setStatus(response.ok ? "Draft saved" : "Could not save the draft (" + response.status + ")");
      if (!response.ok) { dirty = true; }
    }).catch(function () { dirty = true; setStatus("Offline: the draft will be saved when you are back online"); });
  }
  function changed() {
    dirty = true;
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(saveDraft, 400);
  }
  form.addEventListener("change", changed);
  if (comment) { comment.addEventListener("input", changed); }
  window.addEventListener("pagehide", function () { saveDraft(true); });

  /* Which question the keys act on. */
  function focusDimension(index, scroll) {
    if (!fieldsets.length) { return; }
    current = Math.max(0, Math.min(fieldsets.length - 1, index));
    fieldsets.forEach(function (fs, i) {
      fs.classList.toggle("is-current", i === current);
      if (i === current) { fs.setAttribute("aria-current", "step"); } else { fs.removeAttribute("aria-current"); }
    });
    if (scroll !== false && fieldsets[current].scrollIntoView) {
      fieldsets[current].scrollIntoView({ block: "nearest" });
    }
  }
  function firstUnanswered() {
    for (var i = 0; i < fieldsets.length; i++) {
      if (!fieldsets[i].querySelector("input[type=radio]:checked")) { return i; }
    }
    return -1;
  }
  function choose(value) {
    var fs = fieldsets[current];
    if (!fs) { return; }
    var input = fs.querySelector("input[type=radio][value=" + value + "]");
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    if (current < fieldsets.length - 1) { focusDimension(current + 1); }
  }
  function toggle(id) {
    var box = document.getElementById(id);
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function submit() {
    var missing = firstUnanswered();
    if (missing >= 0) {
      focusDimension(missing);
      setStatus("Please answer question " + (missing + 1) + " first.");
      return;
    }
    if (timer) { clearTimeout(timer); timer = null; }
    dirty = false;
    form.requestSubmit ? form.requestSubmit() : form.submit();
  }
  form.addEventListener("submit", function () { timeField.value = String(elapsed()); dirty = false; });

  /* Clicking into a question makes it the current one. */
  fieldsets.forEach(function (fs, i) {
    fs.addEventListener("focusin", function () { focusDimension(i, false); });
    fs.addEventListener("click", function () { focusDimension(i, false); });
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text"));
    if (typing) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var key = event.key;
    var handled = true;
    if (event.shiftKey && (key === "A" || key === "a")) { toggle("unsafe-left"); }
    else if (event.shiftKey && (key === "B" || key === "b")) { toggle("unsafe-right"); }
    else if (event.shiftKey) { handled = false; }
    else if (key === "a") { choose("left"); }
    else if (key === "b") { choose("right"); }
    else if (key === "t") { choose("tie"); }
    else if (key === "j") { focusDimension(current + 1); }
    else if (key === "k") { focusDimension(current - 1); }
    else if (/^[1-9]$/.test(key) && parseInt(key, 10) <= fieldsets.length) { focusDimension(parseInt(key, 10) - 1); }
    else if (key === "c" && comment) { comment.focus(); }
    else if (key === "Enter") {
      if (target && (target.tagName === "BUTTON" || target.tagName === "A") && target.form !== form) { handled = false; }
      else { submit(); }
    }
    else if (key === "u" && undoForm) { saveDraft(true); undoForm.submit(); }
    else { handled = false; }
    if (handled) { event.preventDefault(); }
  });

  var start = firstUnanswered();
  focusDimension(start >= 0 ? start : 0, false);
  var error = document.getElementById("form-error");
  if (error) { error.setAttribute("tabindex", "-1"); error.focus(); }
})();
