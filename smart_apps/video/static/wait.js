// telefhir waiting room: a heartbeat so the clinician sees the patient is still here, and the
// server's events (SSE, read with visit.js's reader): "ready" carries a fresh single-use
// join link.
"use strict";

(function () {
  const base = window.location.pathname.replace(/\/$/, "");
  const state = { events: [], beats: 0 };
  const say = (text) => { document.getElementById("status").textContent = text; };

  async function beat() {
    try {
      const resp = await fetch(base + "/heartbeat", { method: "POST" });
      if (resp.ok) state.beats += 1;
    } catch (e) { /* offline for a moment: the next beat tells */ }
  }

  async function listen() {
    for (;;) {
      try {
        const resp = await fetch(base + "/events");
        if (!resp.ok) { say("This waiting room is closed."); return; }
        let over = false;
        await telefhirVisit.readEvents(resp, (_name, event) => {
          state.events.push(event);
          if (event.state === "ready") {
            say("Your clinician is ready. Joining the visit...");
            window.location.assign(event.joinUrl + "#autojoin");
            over = true;
          } else if (event.state === "ended") {
            say("This visit has ended.");
            over = true;
          }
          return !over;
        });
        if (over) return;
      } catch (e) { /* reconnect */ }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  beat();
  setInterval(beat, 10000);
  listen();
  window.telefhirWaiting = state;
})();
