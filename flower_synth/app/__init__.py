"""The Flower App that ``flwr run .`` starts: its ServerApp, its ClientApp and the
typed run config they share. Built on the library above it, used by the bench below."""
