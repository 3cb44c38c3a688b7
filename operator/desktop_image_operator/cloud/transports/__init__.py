"""The two wire protocols behind the `Transport` interface: REST over httpx, and gRPC with the vendored stubs.

Each has its transport module and its wire module (turning the protocol's messages into the cloud layer's
plain values and back).
"""
