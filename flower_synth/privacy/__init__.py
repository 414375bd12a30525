"""Differential privacy for what leaves a client: DP-SGD for the torch generators
(:class:`DPSGD`, through Opacus) and the privacy each client spends
(:class:`PrivacyLedger`, Opacus' RDP accountant)."""

from flower_synth.privacy.dp_sgd import DPSGD, PrivacyLedger, noise_for_budget

__all__ = ["DPSGD", "PrivacyLedger", "noise_for_budget"]
