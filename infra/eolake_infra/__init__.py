"""eolake on Kubernetes: Pulumi components translating the platform spec (eolake.spec)."""
