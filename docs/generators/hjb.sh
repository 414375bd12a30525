#!/bin/bash
# The HJB ablation of docs/RESULTS.md ("Generators"): flow matching fitted one epoch
# with and without the HJB-residual penalty, sampled with 2, 4 and 8 Euler steps; does
# the penalty straighten the paths (kinetic energy against straight paths' -> 1) and
# give the same Fréchet distance in fewer steps? One machine, one after the other.
set -e
B=".venv/bin/flower-synth generator-bound --generator flow --generator-epochs 1 --channels 16 --solver euler --steps 2 4 8 --samples 5000"
$B --hjb-weight 0
$B --hjb-weight 0.1
