// telefhir video visit client: getUserMedia and RTCPeerConnection against the media
// service's WHIP (publish, RFC 9725) and WHEP (subscribe) endpoints. Used by the patient's
// join page and by the clinician's SMART app. No framework; exposes window.telefhirVisit.
"use strict";

(function () {
  const state = {
    join: null,          // the JSON of a redeemed join link
    publisher: null,     // RTCPeerConnection sending our camera and microphone
    subscribers: {},     // participant id -> RTCPeerConnection receiving them
    resources: [],       // Location URLs of our WHIP/WHEP sessions, deleted on leave
    local: null,         // our MediaStream
    startedAt: null,
    events: [],
    timers: [],
  };

  function $(id) { return document.getElementById(id); }

  function say(text) {
    const el = $("status");
    if (el) el.textContent = text;
  }

  function showError(err) {
    say("The visit could not start: " + (err && err.message ? err.message : err));
    console.error(err);
  }

  function iceComplete(pc) {
    // The media service does not take trickled candidates: wait for all of them.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  async function exchange(pc, url) {
    await pc.setLocalDescription(await pc.createOffer());
    await iceComplete(pc);
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp",
                 "Authorization": "Bearer " + state.join.token },
      body: pc.localDescription.sdp,
    });
    const body = await resp.text();
    if (resp.status !== 201) {
      let reason = body;
      try { reason = JSON.parse(body).error; } catch (e) { /* not JSON */ }
      throw new Error(reason || ("HTTP " + resp.status));
    }
    const location = resp.headers.get("Location");
    if (location) state.resources.push(new URL(location, url).toString());
    await pc.setRemoteDescription({ type: "answer", sdp: body });
  }

  async function publish() {
    state.local = await navigator.mediaDevices.getUserMedia({
      audio: true, video: { width: 640, height: 480, frameRate: 15 } });
    $("local").srcObject = state.local;
    const pc = new RTCPeerConnection({ iceServers: state.join.iceServers });
    pc.addTransceiver(state.local.getAudioTracks()[0], { direction: "sendonly" });
    pc.addTransceiver(state.local.getVideoTracks()[0], { direction: "sendonly" });
    state.publisher = pc;
    await exchange(pc, state.join.whip);
  }

  async function subscribe(other) {
    const pc = new RTCPeerConnection({ iceServers: state.join.iceServers });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
    const remote = new MediaStream();
    pc.addEventListener("track", (ev) => {
      remote.addTrack(ev.track);
      $("remote").srcObject = remote;
    });
    state.subscribers[other.id] = pc;
    $("remote-name").textContent = other.role + " (" + other.reference + ")";
    await exchange(pc, state.join.whep + "/" + encodeURIComponent(other.id));
  }

  async function readEvents(resp, onEvent) {
    // Server-Sent Events read with fetch (so that a token can go in a header, which
    // EventSource cannot do): onEvent(name, data) per event, until the stream ends or
    // onEvent returns false.
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const lines = buffer.slice(0, cut).split("\n");
        buffer = buffer.slice(cut + 2);
        const data = lines.find((l) => l.startsWith("data: "));
        if (!data) continue;
        const name = (lines.find((l) => l.startsWith("event: ")) || "event: message").slice(7);
        if (onEvent(name, JSON.parse(data.slice(6))) === false) {
          reader.cancel();
          return;
        }
      }
    }
  }

  async function listen() {
    // Room events of the media service.
    try {
      const resp = await fetch(state.join.events, {
        headers: { "Authorization": "Bearer " + state.join.token } });
      await readEvents(resp, (_name, event) => {
        state.events.push(event);
        onEvent(event);
      });
    } catch (err) {
      console.warn("room events ended", err);
    }
  }

  function onEvent(event) {
    if (event.type === "joined" && event.participant.id !== state.join.participant) {
      say(event.participant.role + " joined");
    } else if (event.type === "left" && event.participant.id !== state.join.participant) {
      say(event.participant.role + " left; they can rejoin");
    } else if (event.type === "closed") {
      say("The visit has ended");
      stopMedia();
    }
  }

  function tick() {
    if (!state.startedAt) return;
    const s = Math.floor((Date.now() - state.startedAt) / 1000);
    const mm = String(Math.floor(s / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    $("timer").textContent = mm + ":" + ss;
  }

  async function quality() {
    // Connection quality from the inbound video statistics of the other party.
    const pcs = Object.values(state.subscribers);
    if (!pcs.length) return;
    const stats = await pcs[0].getStats();
    let fps = 0, lost = 0, received = 0;
    stats.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") {
        fps = r.framesPerSecond || 0; lost = r.packetsLost || 0;
        received = r.packetsReceived || 0;
      }
    });
    const loss = received ? lost / (lost + received) : 0;
    const label = !received ? "waiting" : (fps >= 12 && loss < 0.02) ? "good"
      : (fps >= 6 && loss < 0.08) ? "fair" : "poor";
    const el = $("quality");
    el.textContent = label;
    el.className = "quality-" + label;
  }

  async function framesDecoded() {
    // For tests and the quality display: frames decoded of each party's video.
    const out = {};
    for (const [id, pc] of Object.entries(state.subscribers)) {
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") out[id] = r.framesDecoded || 0;
      });
    }
    return out;
  }

  function stopMedia() {
    state.timers.forEach(clearInterval);
    state.timers = [];
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    if (state.publisher) state.publisher.close();
    Object.values(state.subscribers).forEach((pc) => pc.close());
  }

  async function leave() {
    for (const url of state.resources) {
      try {
        await fetch(url, { method: "DELETE",
                           headers: { "Authorization": "Bearer " + state.join.token } });
      } catch (e) { /* the room may already be closed */ }
    }
    state.resources = [];
    stopMedia();
    say("You left the visit");
  }

  function wireControls() {
    $("mute").addEventListener("click", (ev) => {
      const on = ev.target.getAttribute("aria-pressed") !== "true";
      state.local.getAudioTracks().forEach((t) => { t.enabled = !on; });
      ev.target.setAttribute("aria-pressed", String(on));
      ev.target.textContent = on ? "Unmute" : "Mute";
    });
    $("camera").addEventListener("click", (ev) => {
      const off = ev.target.getAttribute("aria-pressed") !== "true";
      state.local.getVideoTracks().forEach((t) => { t.enabled = !off; });
      ev.target.setAttribute("aria-pressed", String(off));
      ev.target.textContent = off ? "Camera on" : "Camera off";
    });
    $("leave").addEventListener("click", () => { leave(); });
  }

  async function start(join) {
    state.join = join;
    $("room").hidden = false;
    const button = $("join");
    if (button) button.hidden = true;
    wireControls();
    say("Connecting");
    listen();
    // Subscribe first: the others' media flows whenever they publish, no renegotiation.
    for (const other of join.participants) {
      if (other.id !== join.participant) await subscribe(other);
    }
    await publish();
    state.startedAt = Date.now();
    state.timers.push(setInterval(tick, 1000), setInterval(quality, 2000));
    say("In the visit");
  }

  async function joinWithLink(path) {
    const resp = await fetch(path, { method: "POST",
                                     headers: { "Accept": "application/json" } });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
    await start(body);
  }

  window.telefhirVisit = { joinWithLink, start, leave, framesDecoded, showError, readEvents,
                          state };
})();
