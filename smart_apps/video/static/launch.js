// telefhir video visit, the clinician's side: a SMART app launched from the EHR
// (https://hl7.org/fhir/smart-app-launch/app-launch.html). Authorization code flow with PKCE
// (the browser's Web Crypto for the S256 challenge), then $start-visit on the encounter's
// Appointment (launched without one: today's waiting-room queue, live, to start from), the
// practitioner's join link redeemed, the room joined (visit.js), and notes
// saved to the chart as a DocumentReference on the Encounter. Exposes window.telefhirLaunch.
"use strict";

(function () {
  const main = document.getElementById("visit");
  const cfg = main.dataset;
  const query = new URLSearchParams(window.location.search);
  const state = { token: null, iss: null, encounter: null, note: null, join: null,
                  queue: null, queueAbort: null, queueTimer: null };
  const say = (text) => { document.getElementById("status").textContent = text; };

  function b64url(bytes) {
    let s = "";
    bytes.forEach((b) => { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function random(n) { return b64url(crypto.getRandomValues(new Uint8Array(n))); }

  async function authorize(iss, launch) {
    const smart = await (await fetch(iss.replace(/\/$/, "") +
                                     "/.well-known/smart-configuration")).json();
    const verifier = random(32);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    const key = random(16);
    sessionStorage.setItem("telefhir.visit." + key, JSON.stringify(
      { verifier, iss, tokenUrl: smart.token_endpoint }));
    const params = new URLSearchParams({
      response_type: "code", client_id: cfg.clientId, redirect_uri: cfg.redirectUri,
      scope: cfg.scopes, state: key, aud: iss, launch,
      code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256" });
    window.location.assign(smart.authorization_endpoint + "?" + params.toString());
  }

  async function redeemCode(code, key) {
    const pending = JSON.parse(sessionStorage.getItem("telefhir.visit." + key) || "null");
    if (!pending) throw new Error("This sign-in was not started here; launch again");
    sessionStorage.removeItem("telefhir.visit." + key);
    const resp = await fetch(pending.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code,
                                  redirect_uri: cfg.redirectUri, client_id: cfg.clientId,
                                  code_verifier: pending.verifier }) });
    const token = await resp.json();
    if (!resp.ok) throw new Error(token.error_description || token.error || "token refused");
    history.replaceState(null, "", window.location.pathname);  // the code is spent
    state.iss = pending.iss.replace(/\/$/, "");
    state.token = token;
  }

  async function fhir(path, method, body) {
    const headers = { "Authorization": "Bearer " + state.token.access_token,
                      "Accept": "application/fhir+json" };
    if (body !== undefined) headers["Content-Type"] = "application/fhir+json";
    const resp = await fetch(state.iss + "/" + path, {
      method: method || "GET", headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
    const out = await resp.json();
    if (!resp.ok) {
      const why = (out.issue || []).map((i) => i.diagnostics).join("; ");
      throw new Error(why || ("HTTP " + resp.status));
    }
    return out;
  }

  function relative(ref) {
    // fhirUser comes absolute (https://host/fhir/Practitioner/1): keep Type/id
    const parts = String(ref || "").split("/");
    return parts.slice(-2).join("/");
  }

  async function startVisit() {
    if (!state.token.encounter) return showQueue();
    const enc = await fhir("Encounter/" + state.token.encounter);
    const appt = ((enc.appointment || [])[0] || {}).reference;
    if (!appt) throw new Error("Encounter/" + enc.id + " has no Appointment");
    await startAppointment(appt);
  }

  async function startAppointment(appt) {
    say("Starting the visit");
    const started = await fhir(appt + "/$start-visit", "POST",
                               { resourceType: "Parameters", parameter: [] });
    const encRef = started.parameter.find((p) => p.name === "encounter").valueReference;
    state.encounter = await fhir(encRef.reference);
    document.getElementById("context").textContent =
      "Encounter/" + state.encounter.id + " for " + (state.encounter.subject || {}).reference;
    const me = relative(state.token.fhirUser);
    const people = started.parameter.filter((p) => p.name === "participant").map((p) => {
      const get = (n) => p.part.find((x) => x.name === n) || {};
      return { reference: (get("reference").valueReference || {}).reference,
               role: get("role").valueCode, joinUrl: get("joinUrl").valueUrl };
    });
    const mine = people.find((p) => p.reference === me) ||
      people.find((p) => p.role === "practitioner");
    if (!mine) throw new Error("You are not a participant of " + appt);
    const resp = await fetch(mine.joinUrl, { method: "POST",
                                             headers: { "Accept": "application/json" } });
    state.join = await resp.json();
    if (!resp.ok) throw new Error(state.join.error || ("HTTP " + resp.status));
    stopQueue();
    document.getElementById("notes").hidden = false;
    await telefhirVisit.start(state.join);
  }

  // -- the waiting room queue (launched without an encounter) ----------------------------------

  function stopQueue() {
    if (state.queueAbort) state.queueAbort.abort();
    state.queueAbort = null;
    clearInterval(state.queueTimer);
    document.getElementById("queue").hidden = true;
  }

  function waited(item) {
    if (!item.arrived || item.encounterStatus !== "arrived") return "";
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(item.arrived)) / 1000));
    return Math.floor(s / 60) + " min " + (s % 60) + " s";
  }

  function renderQueue(data) {
    state.queue = data;
    const body = document.getElementById("queue-rows");
    body.textContent = "";
    document.getElementById("queue-day").textContent = data.date + " (" + data.zone + ")";
    for (const item of data.queue) {
      const row = document.createElement("tr");
      row.dataset.appointment = item.appointment;
      const cells = [
        item.startLocal ? item.startLocal.time + " " + item.startLocal.abbr : "",
        item.patient.display || item.patient.reference || "",
        item.encounterStatus || item.status,
        waited(item),
        item.present ? "here" : (item.lastSeen ? "gone since " + item.lastSeen : ""),
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        row.appendChild(td);
      }
      const td = document.createElement("td");
      if (item.encounterStatus === "arrived" || item.encounterStatus === "in-progress") {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "start";
        button.textContent = item.encounterStatus === "arrived" ? "Start visit" : "Rejoin";
        button.addEventListener("click", () => {
          startAppointment(item.appointment).catch((err) => say("Not started: " + err.message));
        });
        td.appendChild(button);
      }
      row.appendChild(td);
      body.appendChild(row);
    }
  }

  async function showQueue() {
    const me = relative(state.token.fhirUser);
    if (!me.startsWith("Practitioner/")) throw new Error("Launch the app with an encounter");
    document.getElementById("queue").hidden = false;
    say("Today's virtual visits");
    const events = new URL("/visit/queue/events", window.location.href);
    events.searchParams.set("practitioner", me);
    state.queueTimer = setInterval(() => { if (state.queue) renderQueue(state.queue); }, 1000);
    for (;;) {  // the stream ends after a while by design: reconnect
      state.queueAbort = new AbortController();
      try {
        const resp = await fetch(events.toString(), {
          headers: { "Authorization": "Bearer " + state.token.access_token },
          signal: state.queueAbort.signal });
        if (!resp.ok) throw new Error("The queue was refused (HTTP " + resp.status + ")");
        await telefhirVisit.readEvents(resp, (name, data) => {
          if (name === "queue") renderQueue(data);
        });
      } catch (err) {
        if (err.name === "AbortError") return;
        if (String(err.message).startsWith("The queue was refused")) throw err;
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
  }

  function utf8base64(text) {
    let s = "";
    new TextEncoder().encode(text).forEach((b) => { s += String.fromCharCode(b); });
    return btoa(s);
  }

  async function saveNote() {
    const status = document.getElementById("note-status");
    const text = document.getElementById("note").value;
    const enc = state.encounter;
    const doc = {
      resourceType: "DocumentReference", status: "current", docStatus: "preliminary",
      type: { coding: [{ system: "http://loinc.org", code: "11506-3",
                         display: "Progress note" }] },
      subject: enc.subject, date: new Date().toISOString(),
      author: [{ reference: relative(state.token.fhirUser) }],
      description: "Video visit note",
      content: [{ attachment: { contentType: "text/plain; charset=utf-8",
                                data: utf8base64(text), title: "Video visit note" } }],
      context: { encounter: [{ reference: "Encounter/" + enc.id }] },
    };
    try {
      state.note = state.note
        ? await fhir("DocumentReference/" + state.note.id, "PUT", { ...doc, id: state.note.id })
        : await fhir("DocumentReference", "POST", doc);
      status.textContent = "Saved to the chart (DocumentReference/" + state.note.id + ")";
    } catch (err) {
      status.textContent = "Not saved: " + err.message;
    }
  }

  async function run() {
    if (query.get("error")) throw new Error(query.get("error_description") || query.get("error"));
    if (query.get("launch") && query.get("iss")) {
      await authorize(query.get("iss"), query.get("launch"));
      return;
    }
    if (!query.get("code")) throw new Error("Open this app from the EHR launcher");
    await redeemCode(query.get("code"), query.get("state"));
    document.getElementById("save-note").addEventListener("click", saveNote);
    await startVisit();  // the encounter in context, else today's queue
  }

  window.telefhirLaunch = { state, saveNote };
  run().catch((err) => { say("The visit could not start: " + err.message); console.error(err); });
})();
