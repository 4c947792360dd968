"""Telehealth billing: `$submit-claim` (Claims and adjudicated ClaimResponses from a finished
visit), `$export-837p` (X12 837P), and coverage eligibility, from payer fee and rule tables that
are data files (operations/billing/data/)."""
