"""eolake thesaurus service: SKOS vocabularies with a Skosmos-compatible API."""
