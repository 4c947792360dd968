// The npm `fhir` package (FHIR.js) as an independent JSON -> XML serializer for the tests.
// Reads {"definitions": DIR, "files": [PATH, ...]} on stdin; writes {"PATH": "<xml>" or
// {"error": "..."}} on stdout. The package is loaded with the official R4 (4.0.1) type and
// resource StructureDefinitions from DIR instead of its bundled 4.0.0 snapshot.
'use strict';
const fs = require('fs');
const zlib = require('zlib');
const {Fhir, ParseConformance, Versions} = require('fhir');

function bundle(path) {
  const raw = fs.readFileSync(path);
  return JSON.parse(path.endsWith('.gz') ? zlib.gunzipSync(raw).toString('utf8') : raw.toString('utf8'));
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const parser = new ParseConformance(false, Versions.R4);
parser.parseBundle(bundle(input.definitions + '/profiles-types.json'));
parser.parseBundle(bundle(input.definitions + '/profiles-resources.json.gz'));
const fhir = new Fhir(parser);
const out = {};
for (const file of input.files) {
  try {
    out[file] = fhir.jsonToXml(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    out[file] = {error: String(e && e.message || e)};
  }
}
process.stdout.write(JSON.stringify(out));
