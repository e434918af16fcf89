"""eolake catalog service."""
