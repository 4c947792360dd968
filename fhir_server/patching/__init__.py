"""The patch formats of the patch interaction (https://hl7.org/fhir/R4/http.html#patch):
JSON Patch, FHIRPath Patch and JSON Merge Patch, each a pure function from a resource and a
patch document to the patched resource. `formats.parse_patch` picks one by media type."""
