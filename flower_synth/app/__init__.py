"""The Flower App that ``flwr run .`` starts: its ServerApp, its ClientApp and the
typed run config they share. Built on the library above it, used by the bench below."""

from flower_synth.extras import require_extra

require_extra("app", "flower-synth's Flower App", ("flwr_datasets", "datasets", "torchvision"))
