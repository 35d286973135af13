"""The client side: the Python SDK (node and coordinator clients) and the i2v command line."""
