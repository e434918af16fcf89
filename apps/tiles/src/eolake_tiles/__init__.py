"""eolake tile service: titiler-pgstac behind the service kit."""
