"""The comparison bench: experiments, the runner that executes them through Flower,
reports and plots, local federations and their processes, and the ``flower-synth``
command line. It drives the Flower App and the library; nothing imports it but tests."""
