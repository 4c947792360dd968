// telefhir waiting room: a heartbeat so the clinician sees the patient is still here, and the
// server's events (SSE, read with fetch): "ready" carries a fresh single-use join link.
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
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const data = block.split("\n").find((l) => l.startsWith("data: "));
            if (!data) continue;
            const event = JSON.parse(data.slice(6));
            state.events.push(event);
            if (event.state === "ready") {
              say("Your clinician is ready. Joining the visit...");
              window.location.assign(event.joinUrl + "#autojoin");
              return;
            }
            if (event.state === "ended") { say("This visit has ended."); return; }
          }
        }
      } catch (e) { /* reconnect */ }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  beat();
  setInterval(beat, 10000);
  listen();
  window.telefhirWaiting = state;
})();
