#!/bin/bash
# The generator table of docs/RESULTS.md ("Generators"), one machine, one after the other.
set -e
B=".venv/bin/flower-synth generator-bound"
$B --generator cvae cvae-conv symvae --generator-epochs 10
$B --generator flow --generator-epochs 6 --channels 16 --solver heun --steps 4 8
$B --generator score --generator-epochs 6 --channels 16 --solver heun --steps 8 16
$B --generator real  # the ceiling: 20,000 real training images
# classifier-free guidance (later runs; logs in guided.log and guided-wide.log)
$B --generator flow --generator-epochs 6 --channels 16 --solver heun --steps 8 16 \
  --class-dropout 0.1 --guidance-scale 1 1.5
$B --generator flow --generator-epochs 6 --channels 24 --solver heun --steps 8 \
  --class-dropout 0.1 --guidance-scale 1.5  # log in guided-wide.log
# a learning curve of the guided flow: one fit scored after 12 and 24 epochs (log in
# curve.log)
$B --generator flow --generator-epochs 12 24 --channels 16 --solver heun --steps 8 \
  --class-dropout 0.1 --guidance-scale 1 1.5
# the same curve on to 36 and 48 epochs, unguided, the fit kept for later runs (log in
# curve-48.log)
$B --generator flow --generator-epochs 36 48 --channels 16 --solver heun --steps 8 \
  --class-dropout 0.1 --guidance-scale 1 \
  --checkpoint ~/.cache/flower-synth/bound/flow-16ch-dropout-0.1.npz
# the saved 48-epoch fit sampled with 16 steps, no epoch more (log in
# curve-48-steps16.log)
$B --generator flow --generator-epochs 48 --channels 16 --solver heun --steps 16 \
  --class-dropout 0.1 --guidance-scale 1 \
  --checkpoint ~/.cache/flower-synth/bound/flow-16ch-dropout-0.1.npz
# and with guidance 1.25 (log in curve-48-guided.log)
$B --generator flow --generator-epochs 48 --channels 16 --solver heun --steps 8 \
  --class-dropout 0.1 --guidance-scale 1.25 \
  --checkpoint ~/.cache/flower-synth/bound/flow-16ch-dropout-0.1.npz
# and its samples filtered: each one a classifier trained on the same images reads as
# another class drawn again (log in curve-48-filtered.log)
$B --generator flow --generator-epochs 48 --channels 16 --solver heun --steps 8 \
  --class-dropout 0.1 --guidance-scale 1 --filter-samples \
  --checkpoint ~/.cache/flower-synth/bound/flow-16ch-dropout-0.1.npz
