// The console's only script: keeps the live parts of a page fresh (every 2 s while the tab
// is visible) by fetching the same page and swapping each [data-live] element. Without it,
// every page and form still works.
(function () {
  "use strict";
  const live = () => Array.from(document.querySelectorAll("[data-live]"));
  if (live().length === 0) return;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok || answer.redirected) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const old of live()) {
        const next = fresh.querySelector('[data-live="' + old.dataset.live + '"]');
        if (next && next.innerHTML !== old.innerHTML) old.replaceChildren(...next.childNodes);
      }
    } catch (e) {
      // Offline for a moment: try again at the next tick.
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);
})();
