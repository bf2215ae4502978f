"""TAR (tamper-resistant safeguards, Tamirisa et al. 2024) and the fine-tuning attack suite.

- :mod:`jaxsafe.tamper.losses` — the entropy and DPO tamper-resistance losses, the
  random-mapping safeguard, the retain loss and the inner-step weights;
- :mod:`jaxsafe.tamper.preferences` — the refusal variant's preference pairs and its refusal metric;
- :mod:`jaxsafe.tamper.ablation` — directional ablation (Łucki et al. 2024);
- :mod:`jaxsafe.tamper.attacks` — an attack as a frozen dataclass, suites as YAML.
"""
