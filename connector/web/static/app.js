// Live updates without a reload: every 2 s, fetch this very page again and swap in
// each region marked data-live whose content changed. A region holding the keyboard
// focus is left alone until the focus moves on; a signed-out session goes to sign-in.
(() => {
  "use strict";
  const INTERVAL = 2000;
  const state = document.getElementById("live-state");
  let busy = false;

  const say = (text) => {
    if (state && state.textContent !== text) state.textContent = text;
  };

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(location.href, {
        headers: { "X-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
      });
      if (response.type === "opaqueredirect" || response.status === 303) {
        location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!response.ok) {
        say(`Live updates paused: the connector answered ${response.status}`);
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live]")) {
        const next = fresh.querySelector(`[data-live="${CSS.escape(region.dataset.live)}"]`);
        if (!next || region.contains(document.activeElement)) continue;
        if (region.innerHTML !== next.innerHTML) region.replaceWith(document.adoptNode(next));
      }
      say("Updates live, last at " + new Date().toLocaleTimeString());
    } catch (err) {
      say("Live updates paused: cannot reach the connector");
    } finally {
      busy = false;
    }
  }

  setInterval(refresh, INTERVAL);
  document.addEventListener("visibilitychange", refresh);
})();
