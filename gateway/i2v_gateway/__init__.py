"""i2v-gateway: the cluster over HTTP. An OpenAI-compatible videos API (`/v1/videos`), live progress
as Server-Sent Events, and the web page, served by a stateless process that is a client of the
coordinators through the i2v_client SDK (docs/gateway.md)."""
