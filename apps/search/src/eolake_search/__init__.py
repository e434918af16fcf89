"""eolake federated search: a STAC API over several providers, in parallel, with EODAG."""
