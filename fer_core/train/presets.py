"""Training presets. Throughput figures: bench/RESULTS.md (bench/bench_train.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from fer_core.errors import InvalidInput


@dataclass(frozen=True)
class Preset:
    name: str
    model: str = "compact"
    width: int = 32              # compact: channels of the first block
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adam"      # adam | sgd (nesterov)
    lr: float = 1e-3
    # how the learning rate falls: None = the optimizer's own (adam: halved on a validation-loss plateau; sgd: cosine
    # decay to 0 over the run); "cosine" = cosine decay to 0 over the run for either, and no early stopping: the run
    # ends where the rate reaches 0 and keeps its last weights (a stop part-way would land at a high rate, anywhere
    # on a noisy path — what made one standard run's FER+ Test figure differ from another's by up to 4 points)
    lr_decay: str | None = None
    patience: int | None = 6     # early stopping on val accuracy (best weights restored); None = no stopping
    augment: str = "standard"    # none | light | standard
    balance: str = "none"        # none | class_weight | sampler
    max_train: int | None = None  # stratified subset of the training images (smoke)
    tta: bool = True             # horizontal-flip test-time augmentation
    # images per epoch, cycling through the data (None: one pass). A budget in gradient steps instead of passes:
    # an A/B with budget "steps" sets it to the raw arm's training images for every arm that keeps fewer
    epoch_images: int | None = None

    @property
    def stops_early(self) -> bool:
        return selects_epoch(asdict(self))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("epoch_images", "lr_decay"):
            if d[k] is None:             # runs saved before it existed compare equal (resume, baseline reuse)
                del d[k]
        return d


LR_DECAYS = ("cosine",)

PRESETS = {
    # about a minute on a 2-core CPU: for tests and a first look. SGD with its cosine decay to 0 over the 4 epochs
    # (2026-11-30, FER2013 PrivateTest, seeds 0-3, one TensorFlow thread): 36.6/37.1/37.1/34.3% against Adam at a
    # constant 2e-3's 26.0/36.9/34.5/32.6% — Adam's last epoch landed anywhere on a noisy path (seed 0 near chance)
    "smoke": Preset("smoke", width=16, epochs=4, batch_size=64, optimizer="sgd", lr=0.02, patience=None,
                    augment="light", max_train=5000),
    # CPU-friendly: tens of minutes on 2 cores for FER2013; long enough to start memorising noisy labels. Adam's rate
    # along a cosine to 0, no early stopping, since 2026-12-07: three FER2013 runs of each schedule (bench/RESULTS.md,
    # issue 17) varied 0.59 points (sd) on FER+ Test against the plateau schedule's 1.66 (Adam at a constant rate,
    # halved on a validation-loss plateau, best validation epoch kept: a run ended wherever the noisy path was when
    # FER2013's disputed validation labels peaked) — the seed noise an A/B has to see through.
    "standard": Preset("standard", width=32, epochs=24, batch_size=128, lr=1e-3, lr_decay="cosine", patience=None),
    # GPU schedule aimed at the published ~73% single-model PrivateTest accuracy (residual network, SGD)
    "full": Preset("full", model="residual", epochs=120, batch_size=128, optimizer="sgd", lr=0.05, patience=25),
}


def selects_epoch(saved: dict | None) -> bool:
    """Whether a run saved with this preset definition (a run config's "preset") kept its best epoch by validation
    accuracy (early stopping) rather than its last."""
    saved = saved or {}
    return saved.get("patience") is not None and saved.get("lr_decay") != "cosine"


def get(name: str, **changes) -> Preset:
    if name not in PRESETS:
        raise InvalidInput(f"Unknown preset '{name}'.", "Use " + ", ".join(PRESETS) + ".")
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes.get("lr_decay") not in (None, *LR_DECAYS):
        raise InvalidInput(f"Unknown learning-rate decay '{changes['lr_decay']}'.", "Use " + " or ".join(LR_DECAYS) + ".")
    return replace(PRESETS[name], **changes)
