"""eolake time-series service: hydrology virtual stations and water-level series."""
