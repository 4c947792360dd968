"""The FHIR R4 search engine (https://hl7.org/fhir/R4/search.html), indexed in SQL.

- `schema`: index tables (`INDEX_TABLES`, `index_ddl(dialect)`), written by the stores;
- `indexer`: `get_indexer().rows(resource)`, the index rows of one resource (write time);
- `parse` -> `query` -> `engine`: `SearchEngine.search(...)`, `SearchEngine.find_ids(...)`;
- `include`, `elements`, `cursor`: _include/_revinclude, _summary/_elements, keyset paging.
"""
