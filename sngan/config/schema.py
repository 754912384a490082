"""The typed schema of the training configuration: which keys exist and their types (the values, each with
its comment, are the YAML files of sngan/configs/)."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """An invalid configuration; the message says which key and what to do."""


@dataclass
class ModelConfig:
    name: str
    z_dim: int
    width: float  # channel multiplier; < 1 builds narrow versions
    spectral_norm: bool  # follows constraint.spectral_norm (kept for old checkpoints); may not contradict it
    conditional: bool  # class-conditional: conditional-BN G and projection D (ResNets)


@dataclass
class DatasetConfig:
    name: str
    root: str
    split: str
    resolution: int | None  # None: the model's resolution
    hflip: bool
    size: int  # synthetic: number of images
    modes: int  # synthetic: number of prototypes K
    seed: int  # synthetic: seed of the prototypes
    cache: bool  # keep the decoded uint8 images in <root>/.sngan_cache (decoded once)
    limit: int | None  # train on a fixed random subset of this many images (the references keep the split)


@dataclass
class LossConfig:
    name: str


@dataclass
class OptimConfig:
    lr_g: float
    lr_d: float
    beta1: float
    beta2: float
    decay: str  # linear (to 0 at the last step) | none


@dataclass
class LoopConfig:
    steps: int  # generator updates
    n_dis: int  # discriminator updates per generator update
    batch_size_d: int
    batch_size_g: int
    log_every: int
    sample_every: int
    eval_every: int  # synthetic quality measure
    eval_samples: int
    checkpoint_every: int
    checkpoint_minutes: float | None  # also save every this many minutes of wall time
    max_minutes: float | None  # stop cleanly, with a checkpoint, after this many minutes
    keep_checkpoints: int
    grid_size: int
    monitor_every: int | None  # spectral norms, gradient norms, D output histograms; None: off
    ema_decay: float | None  # e.g. 0.999: keep an EMA of G (checkpointed, sampled)
    on_nonfinite: str  # stop (save the last good state) | skip (drop the update, count it)
    sync_bn: bool  # under torchrun: G's BatchNorm statistics over the global batch (CUDA only)
    requeue_signal: str | None  # e.g. USR1 (SLURM --signal): checkpoint, `scontrol requeue`, exit
    fake_labels: str  # conditional: fakes' classes as often as in the training set | uniform
    # Speed (sngan/training/speed.py): auto picks the fastest settings this device and launch support.
    precision: str  # auto | fp32 | bf16 (autocast; spectral norm and losses stay fp32)
    tf32: bool | None  # None: on for Ampere and newer GPUs
    compile: str  # auto | none | default | max (CUDA graphs)
    channels_last: bool | None  # None: on for CUDA and the CPU
    data_on: str  # auto | device (images held on the GPU) | host
    dry_run: bool  # build everything, print the plan (settings, sizes, schedule, disk), train nothing


DEFAULT_MEASURES = ["fid", "is", "kid", "prdc"]  # what a metric rule computes unless it lists others


@dataclass
class MetricsConfig:
    """A metric rule (config group metrics/): how a number is computed; ``name`` labels every number it yields."""

    name: str  # none | fid_paper | fid_paper_final | fid50k_train | fid10k_test | a name of your own
    n_fake: int  # generated images for FID/KID/PRDC
    real_split: str  # train: the split the model trains on | test: the dataset's test split
    n_real: int | None  # None: the whole split; else n_real of them (metrics.reference.reference_index)
    is_split_size: int = 5_000  # images per Inception Score split (the SNGAN authors': 5,000)
    is_splits: int = 10  # IS takes the first is_split_size x is_splits generated images; one split: no IS std
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc_n: int = 10_000  # real and generated features (at most) for precision/recall/density/coverage; 0: off
    stats: str | None = None  # a statistics .npz to use (e.g. a published one) instead of the cache
    measures: list[str] = field(default_factory=lambda: list(DEFAULT_MEASURES))  # sngan/metrics/measures.py
    network: str = "inception"  # the feature network: inception (pytorch-fid's) | dinov2 (ViT-L/14, 224 px)
    resize: str = "legacy"  # to the network's input size: legacy (the network's usual) | clean (clean-fid's)

    @property
    def is_images(self) -> int:
        return self.is_split_size * self.is_splits

    @property
    def n_generated(self) -> int:
        """Images a scoring generates: FID, KID and PRDC take the first ``n_fake``, IS (where the rule computes it)
        the first ``is_images`` (from the same seeded stream, so the IS images beyond ``n_fake`` leave the other
        numbers as they were)."""
        return max(self.n_fake, self.is_images) if "is" in self.measures else self.n_fake

    def is_protocol(self) -> str:
        """The IS protocol in words, for the JSON, the dry run and notes."""
        if self.is_splits == 1:
            return f"1 split of {self.is_split_size:,} images, no std"
        return f"{self.is_splits} splits of {self.is_split_size:,} images: {self.is_images:,}"


@dataclass
class InceptionConfig:
    weights: str | None  # None: $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth
    stats_dir: str  # cache of reference statistics
    batch_size: int
    dims: int  # 64 | 192 | 768 | 2048 (pytorch-fid's blocks); papers use 2048
    dinov2_weights: str | None = None  # metrics.network=dinov2: None: timm's download; else a local file


@dataclass
class LoggerConfig:
    """Where a run's numbers go besides TensorBoard and metrics.jsonl (config group logger/)."""

    name: str  # tensorboard | wandb | mlflow
    project: str  # wandb project; mlflow experiment
    entity: str | None  # wandb team or user
    mode: str | None  # wandb: online | offline | disabled; None: $WANDB_MODE, else online (W&B's own rule)
    tags: list[str]
    tracking_uri: str | None  # mlflow; None: $MLFLOW_TRACKING_URI or MLflow's default


@dataclass
class AugmentConfig:
    """What D sees of every image (config group augment/; sngan/training/augment.py)."""

    name: str  # none | diffaugment | ada
    p: float  # probability each transform applies (ada: the start)
    policy: list[str]  # diffaugment's transforms
    adaptive: bool  # ada: p follows r_t toward target
    target: float
    interval: int  # D updates between adjustments
    speed_kimg: float  # thousands of real images for p to move by 1


@dataclass
class ConstraintConfig:
    """How D is kept in check (config group constraint/; sngan/models/constraints.py); a constant the
    chosen constraint does not use is null."""

    name: str  # sn | none | weight_clip | wgan_gp | gan_gp | bn | ln | wn | orthonormal | wgan_gp_sn
    spectral_norm: bool  # fixed by the name (sn, wgan_gp_sn: true); model.spectral_norm follows it
    clip: float | None  # weight_clip: D's weights within [-clip, clip] after every update (paper: 0.01)
    gp_weight: float | None  # wgan_gp, gan_gp, wgan_gp_sn: lambda of the gradient penalty (paper: 10)
    ortho_weight: float | None  # orthonormal: coefficient of ||W^T W - I||_F^2 (ours: 1e-4, Brock et al.'s)
    weight: float | None = None  # a penalty of your own: its coefficient (docs/design.md, "Add a D regularizer")


@dataclass
class TrainConfig:
    model: ModelConfig
    dataset: DatasetConfig
    loss: LossConfig
    optim: OptimConfig
    train: LoopConfig
    metrics: MetricsConfig
    inception: InceptionConfig
    logger: LoggerConfig
    augment: AugmentConfig
    constraint: ConstraintConfig
    seed: int
    device: str  # auto | cpu | cuda | cuda:N | mps
    resume: str | None  # None | auto | path to a checkpoint or run folder
    resume_force: bool  # resume although loss, n_dis, batches, optimizer, data or seed changed
    run_name: str
    imports: list[str] = field(default_factory=list)  # modules whose registrations the run needs (imported first)


LIMIT_SEED = 0  # dataset.limit's subset: the same images for every run seed (data.dataset.subset)  # fmt: skip
