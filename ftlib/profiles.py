"""Benchmark profiles, defined in one place: what grid and budget ``smoke``, ``cpu`` and ``gpu`` mean.

Resolution is chosen per dataset (BiT's hyper-rule also ties it to the images). Bare lite0
training steps (batch 32, channels-last, ``benchmarks.steps.step_rate``) on a 2-core AMD EPYC,
2026-11-26: 71-74 / 42-45 / 31-32 / 23 / 16-17 images/s at 96 / 128 / 160 / 176 / 224 px
(another 2-core machine, 2026-11-24: 142 / 69 / 44 / 25 / 18). hymenoptera's probe reaches
0.91 at 160 px vs 0.88 at 128 px (3 seeds), so it gets 160 px; 176 px costs ~39% more time per image
for 21% more pixels. Caltech-101 gets 128 px; Fashion-MNIST's 28 px images gain nothing from more
than 96 px.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import unknown

STRATEGY_GRID = ("linear_probe", "partial:k=2", "full", "l2sp", "lp_ft", "scratch")
DATASET_GRID = ("hymenoptera", "caltech101", "fashion_mnist")
# LP-FT at the gpu profile's 30-epoch, 224-px schedule: at its default lr (1e-3) 3 of 6 Fashion-MNIST runs
# collapsed (training loss up to ~2.3, chance) in fp32 as in bf16 and with the same probe heads; at 3e-4 all
# three collapsed cells trained stably and ended within 0.014 of their probes (README, "LP-FT at the gpu
# profile"). None of the cpu profile's 18 LP-FT runs (1-6 epochs) collapsed at 1e-3: the default rule stays.
GPU_STRATEGY_GRID = tuple("lp_ft:lr=0.0003" if s == "lp_ft" else s for s in STRATEGY_GRID)


@dataclass(frozen=True)
class Profile:
    """A benchmark budget. ``resolution[dataset]`` None means the backbone's native input size."""

    name: str
    shots: dict  # dataset -> shot regimes
    seeds: tuple
    resolution: dict  # dataset -> int | None
    image_budget: int  # images seen per run; epochs = budget / n_train within [min_epochs, max_epochs]
    min_epochs: int
    max_epochs: int
    max_test_per_class: dict = field(default_factory=dict)  # dataset -> cap (None: whole test split)
    epochs: int | None = None  # fixed epochs (smoke) instead of the budget rule
    datasets: tuple = DATASET_GRID
    strategies: tuple = STRATEGY_GRID
    note: str = ""


PROFILES = {
    "smoke": Profile(
        "smoke", shots={d: (2,) for d in DATASET_GRID}, seeds=(0,), resolution={d: 64 for d in DATASET_GRID},
        image_budget=0, min_epochs=1, max_epochs=1, epochs=1,
        max_test_per_class={d: 5 for d in DATASET_GRID},
        note="plumbing only: 2 shots, 64 px, 1 epoch, 5 test images per class"),
    "cpu": Profile(
        "cpu", shots={"hymenoptera": (10, "all"), "caltech101": (5, 10), "fashion_mnist": (10, 100)},
        seeds=(0, 1, 2), resolution={"hymenoptera": 160, "caltech101": 128, "fashion_mnist": 96},
        image_budget=800, min_epochs=1, max_epochs=6,
        max_test_per_class={"caltech101": 10, "fashion_mnist": 100},
        note="a real benchmark: 47-50 min on a 2-core CPU (README, Cost and speed)"),
    "gpu": Profile(
        "gpu", shots={"hymenoptera": (10, "all"), "caltech101": (5, 20), "fashion_mnist": (10, 100)},
        seeds=(0, 1, 2, 3, 4), resolution={d: None for d in DATASET_GRID},
        image_budget=8000, min_epochs=5, max_epochs=30, strategies=GPU_STRATEGY_GRID,
        note="native resolution, 5 seeds, fuller budgets, autocast"),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown("profile", name, PROFILES)
    return PROFILES[name]
