"""`telefhir serve`: one supervisor process that starts, watches and stops everything the
server runs (the WSGI workers under granian, the HL7 v2 MLLP listener, the media service), each
in a process of its own that dies with the supervisor, even when it is killed with SIGKILL."""
