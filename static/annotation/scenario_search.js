// The autocomplete's match count: as the researcher types in the scenario autocomplete, say how many
// scenarios the words match (the same search the autocomplete runs). Without JavaScript the page's
// own GET search form shows the count and a list to tick.
(function () {
  const count = document.getElementById("scenario-match-count");
  if (!count) return;
  let timer = null;
  let latest = "";
  document.addEventListener("input", function (event) {
    const box = event.target;
    if (!box.classList || !box.classList.contains("select2-search__field")) return;
    const field = box.closest(".form-row");
    if (!field || !field.contains(count)) return;
    const query = box.value.trim();
    latest = query;
    clearTimeout(timer);
    if (!query) { count.textContent = ""; return; }
    timer = setTimeout(function () {
      fetch(count.dataset.countUrl + "?q=" + encodeURIComponent(query), {credentials: "same-origin"})
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data || data.query !== latest) return;  // an older query's answer
          count.textContent = data.count + (data.count === 1 ? " scenario matches" : " scenarios match") + " “" + data.query + "”.";
        })
        .catch(function () {});
    }, 250);
  });
})();
