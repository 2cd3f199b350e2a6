// The pairing card: poll the device for the pairing state and reload the page when it changes
// (claimed, expired, failed), so the person watching the code sees the result without touching it.
(function () {
  "use strict";
  const card = document.querySelector("[data-pairing]");
  if (!card) { return; }
  const url = card.dataset.stateUrl;
  const shown = card.dataset.state;
  async function poll() {
    try {
      const response = await fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"});
      if (response.ok) {
        const state = await response.json();
        if (state.paired || state.state !== shown) { window.location.reload(); return; }
      } else if (response.status === 401) { window.location.reload(); return; }
    } catch (e) { /* the device is busy or the network blinked: try again */ }
    window.setTimeout(poll, 1500);
  }
  window.setTimeout(poll, 1500);
})();
