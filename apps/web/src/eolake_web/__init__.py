"""eolake web view: the map, search, items, stations and services pages."""
