/* Attune survey: light enhancements. Every page works without this file. */
(function () {
  "use strict";

  /* Copy the resume link. */
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy"));
      var status = button.closest("details, div").parentNode.querySelector("[data-copy-status]");
      function done(ok) {
        if (status) status.textContent = ok ? "Link copied." : "Select the link and copy it.";
      }
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(false); });
      } else {
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(ok);
      }
    });
  });

  /* "Prefer not to say" in a multi-select clears the other boxes, and the reverse. */
  document.querySelectorAll("input[data-exclusive]").forEach(function (exclusive) {
    var group = document.querySelectorAll('input[type=checkbox][name="' + exclusive.name + '"]');
    group.forEach(function (box) {
      box.addEventListener("change", function () {
        if (!box.checked) return;
        group.forEach(function (other) {
          if (other !== box && (box === exclusive || other === exclusive)) other.checked = false;
        });
      });
    });
  });

  /* Ranking widget: drag and drop, move up/down buttons and the rank selects
     are three ways to make the same move; every move is announced. */
  document.querySelectorAll("[data-ranking]").forEach(function (widget) {
    var list = widget.querySelector(".ranking__list");
    var live = widget.querySelector("[data-ranking-status]");
    var help = widget.querySelector("[data-ranking-help]");
    if (help) help.textContent += " You can also use the Up and Down buttons, or drag an item.";
    var dragged = null;

    function items() { return Array.prototype.slice.call(list.children); }
    function title(item) { return item.getAttribute("data-title"); }

    function renumber() {
      var all = items();
      all.forEach(function (item, index) {
        item.querySelector("select").value = String(index + 1);
        item.querySelector("[data-move=up]").setAttribute("aria-disabled", index === 0 ? "true" : "false");
        item.querySelector("[data-move=down]").setAttribute("aria-disabled", index === all.length - 1 ? "true" : "false");
      });
    }

    function announce(message) {
      // Clear first so the same message twice is still read out.
      live.textContent = "";
      window.setTimeout(function () { live.textContent = message; }, 30);
    }

    function moveTo(item, position, focusTarget) {
      var all = items();
      var count = all.length;
      var from = all.indexOf(item);
      position = Math.max(0, Math.min(count - 1, position));
      if (position !== from) {
        all.splice(from, 1);
        var reference = all[position] || null;
        list.insertBefore(item, reference);
      }
      renumber();
      if (focusTarget) focusTarget.focus();
      announce(title(item) + (position === from ? " stays at" : " moved to") + " position " + (position + 1) + " of " + count + ".");
    }

    items().forEach(function (item) {
      var controls = item.querySelector(".ranking__controls");
      var select = item.querySelector("select");
      ["up", "down"].forEach(function (direction) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "ranking__move button--secondary";
        button.setAttribute("data-move", direction);
        button.setAttribute("aria-label", "Move " + title(item) + " " + direction);
        // Short visible text fits one row at 320 px; the label names the item and the move.
        button.textContent = direction === "up" ? "\u25B2 Up" : "\u25BC Down";
        button.addEventListener("click", function () {
          var index = items().indexOf(item);
          var target = direction === "up" ? index - 1 : index + 1;
          if (target < 0 || target >= items().length) {
            announce(title(item) + " is already " + (direction === "up" ? "first." : "last."));
            return;
          }
          moveTo(item, target, button);
        });
        controls.appendChild(button);
      });
      // Keyboard changes on a closed select fire "input" (and "change" only later in some browsers).
      function picked() {
        var target = parseInt(select.value, 10) - 1;
        if (target !== items().indexOf(item)) moveTo(item, target, select);
      }
      select.addEventListener("input", picked);
      select.addEventListener("change", picked);

      item.setAttribute("draggable", "true");
      item.addEventListener("dragstart", function (event) {
        dragged = item;
        item.classList.add("ranking__item--dragging");
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", item.getAttribute("data-key"));
      });
      item.addEventListener("dragend", function () {
        item.classList.remove("ranking__item--dragging");
        dragged = null;
      });
      item.addEventListener("dragover", function (event) {
        if (dragged && dragged !== item) event.preventDefault();
      });
      item.addEventListener("drop", function (event) {
        event.preventDefault();
        if (!dragged || dragged === item) return;
        moveTo(dragged, items().indexOf(item), null);
      });
    });
    widget.classList.add("ranking--enhanced");
    renumber();
  });
})();
