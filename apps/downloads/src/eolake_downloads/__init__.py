"""eolake download service: orders, staging workers and resumable downloads."""
