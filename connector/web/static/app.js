// Live updates without a reload: every 2 s, fetch this very page again and swap in
// each region marked data-live whose content changed. A region holding the keyboard
// focus is left alone until the focus moves on; details the reader opened or closed
// stay so; a signed-out session goes to sign-in. Nothing is polled once every live
// region is settled (a finished run's), nor on a page with none (an older page of a
// list, an error).
(() => {
  "use strict";
  const INTERVAL = 2000;
  const state = document.getElementById("live-state");
  let busy = false;
  let timer = null;

  // Said to screen readers only when it changes: not a line every 2 s.
  const say = (text) => {
    if (state && state.textContent !== text) state.textContent = text;
  };

  // The reader's open or closed <details> carry over to the fresh copy.
  const keepOpen = (old, fresh) => {
    const before = old.querySelectorAll("details");
    const after = fresh.querySelectorAll("details");
    if (before.length !== after.length) return;
    after.forEach((details, i) => { details.open = before[i].open; });
  };

  async function refresh() {
    const regions = document.querySelectorAll("[data-live]");
    if (document.querySelectorAll("[data-live]:not([data-settled])").length === 0) {
      clearInterval(timer);
      say("Up to date");
      return;
    }
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
      // The page's style is not needed to compare, and its nonce is not this page's.
      const html = (await response.text()).replace(/<style[^>]*>[\s\S]*?<\/style>/i, "");
      const fresh = new DOMParser().parseFromString(html, "text/html");
      for (const region of regions) {
        const next = fresh.querySelector(`[data-live="${CSS.escape(region.dataset.live)}"]`);
        if (!next || region.contains(document.activeElement)) continue;
        keepOpen(region, next);
        if (region.outerHTML !== next.outerHTML) region.replaceWith(document.adoptNode(next));
      }
      say("Updates live");
    } catch (err) {
      say("Live updates paused: cannot reach the connector");
    } finally {
      busy = false;
    }
  }

  timer = setInterval(refresh, INTERVAL);
  document.addEventListener("visibilitychange", refresh);
})();
