"""eolake on Kubernetes: Pulumi components translating the platform spec (eolake_spec)."""
