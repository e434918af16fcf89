"""eolake Python client: search, thesaurus, orders and verified, resumable downloads."""
