/* Refreshes the running-now banner from its fragment endpoint every few seconds.
   No framework: one fetch, one innerHTML swap; paused while the tab is hidden. */
(function () {
  "use strict";
  var banner = document.getElementById("running-now");
  if (!banner || !window.fetch) { return; }
  var url = banner.getAttribute("data-refresh-url");
  var every = Math.max(1, parseInt(banner.getAttribute("data-refresh-seconds"), 10) || 5) * 1000;

  function later() { window.setTimeout(refresh, every); }

  function refresh() {
    if (document.hidden) { later(); return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // A redirect means the session ended (login page): stop rather than show it.
        if (response.redirected) { throw new Error("logged out"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        banner.innerHTML = html;
        banner.classList.remove("stale");
        later();
      })
      .catch(function (error) {
        banner.classList.add("stale");
        banner.title = "Not refreshed: " + error.message;
        if (error.message !== "logged out") { later(); }
      });
  }

  later();
})();
