"""The pure shared contract: wire messages, the etcd key schema and records, tiers, profiles,
request limits, the VRAM model and protocol facts. Imports no I/O library (checked in CI)."""
