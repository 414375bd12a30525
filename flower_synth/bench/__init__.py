"""The comparison bench: experiments, the runner that executes them through Flower,
reports and plots, local federations and their processes, and the ``flower-synth``
command line. It drives the Flower App and the library; nothing imports it but tests."""

from flower_synth.extras import require_extra

require_extra(
    "bench", "flower-synth's comparison bench", ("omegaconf", "matplotlib", "cryptography")
)
require_extra(
    "app", "flower-synth's comparison bench", ("flwr_datasets", "datasets", "torchvision")
)
