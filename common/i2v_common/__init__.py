"""I/O adapters shared by the node and the coordinator: etcd and its lease keeper, the artifact
store, logging, service stubs and serving."""
