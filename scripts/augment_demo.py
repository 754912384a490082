"""D memorizing a small set of real photographs, with and without adaptive augmentation (docs/augment.md).

    python scripts/augment_demo.py --out /tmp/augment_demo --threads 1 --jobs 2   # docs/augment.md's run (~2 h)
    python scripts/augment_demo.py --out /tmp/augment_demo --threads 1 --jobs 2 --steps 8000 --resume  # longer
    python scripts/augment_demo.py --out /tmp/demo --images 200 --steps 40     # a quick look

Takes ``--images`` photographs (the same number of each class, the first of each class folder in name
order) from the CIFAR-10 JPEG zip (``--zip``; ../shared/data/cifar10-jpeg-train.zip beside the repository
by default), then trains cnn32 at ``--width`` on them twice for the same steps, on the CPU:

- ``none``: ``augment=ada augment.adaptive=false augment.p=0``, no augmentation (every transform is the
  identity at p = 0), with the overfitting heuristic r_t = E[sign(D(real))] measured and logged;
- ``ada``: ``augment=ada`` with p adapted toward r_t = 0.6 (``--speed-kimg``: how many thousand real
  images p needs to move by 1).

Every ``--check-every`` steps D is saved; afterwards each saved D's r_t is measured, without augmentation,
on the training photographs and on ``--held-out`` photographs of the same classes it never saw (the next
ones of each class folder). D memorizes where the two part: sure of the images it was trained on, not of
new ones.

Writes OUT/curves.csv (step, r_t and p of both runs, the held-out pair), OUT/curves.png (r_t of both,
p of ada and the held-out r_t against the step) and one JSON line per run (final r_t and p, seconds,
steps a second) to stdout and OUT/runs.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RUNS = {"none": ["augment=ada", "augment.adaptive=false", "augment.p=0"], "ada": ["augment=ada"]}


def subset(zip_path: Path, out: Path, images: int, skip: int = 0) -> Path:
    """``images`` photographs, as many of each class, unpacked into out/<class>/: the first of each class
    folder in name order after its first ``skip // classes`` (the held-out set skips the training ones)."""
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(".jpg"))
        classes = sorted({n.split("/")[-2] for n in names})
        per_class, skipped = max(1, images // len(classes)), skip // len(classes)
        for cls in classes:
            for name in [n for n in names if n.split("/")[-2] == cls][skipped : skipped + per_class]:
                target = out / cls / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    return out


def train(name: str, data: Path, args: argparse.Namespace) -> dict[str, object]:
    from sngan.utils import checkpoint as ckpt

    run_dir = args.out / name
    saved = ckpt.list_checkpoints(run_dir) if args.resume else []
    start = ckpt.step_of(saved[-1]) if saved else 0
    timed = {"seconds": None, "it_per_s": None}  # already there (--resume with one run done): measured again
    if start < args.steps:
        timed = run_once(name, run_dir, data, start, args)
    return {"run": name, "steps": args.steps, "from_step": start, **timed, "curves": curves(run_dir)}


def run_once(name: str, run_dir: Path, data: Path, start: int, args: argparse.Namespace) -> dict[str, float]:
    """Train run ``name`` from ``start`` to ``--steps`` in its own process: its seconds and steps a second."""
    cmd = [sys.executable, "-m", "sngan.train", "model=cnn32", f"model.width={args.width}",
           f"constraint={'sn' if args.spectral_norm == 'true' else 'none'}", "dataset=folder", f"dataset.root={data}",
           "dataset.cache=false",
           "metrics=none", "device=cpu", f"seed={args.seed}",
           f"train.steps={args.steps}", f"train.log_every={args.log_every}", f"train.sample_every={args.steps}",
           f"train.eval_every={args.steps}", f"train.checkpoint_every={args.check_every}",
           f"train.keep_checkpoints={args.steps // args.check_every + 1}", "train.monitor_every=null",
           f"augment.speed_kimg={args.speed_kimg}", f"optim.decay={args.decay}", f"hydra.run.dir={run_dir}",
           f"train.n_dis={args.n_dis}", f"train.batch_size_d={args.batch_d}", f"train.batch_size_g={args.batch_g}",
           f"optim.lr_d={args.lr_d or args.lr}", f"optim.lr_g={args.lr}", f"optim.beta1={args.betas[0]}",
           f"optim.beta2={args.betas[1]}",
           *RUNS[name], *(["resume=auto"] if args.resume else [])]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": str(args.threads)})
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"error: the {name} run failed:\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 1), "it_per_s": round((args.steps - start) / seconds, 2)}


def held_out(run_dir: Path, sets: dict[str, Path]) -> dict[str, list[tuple[int, float]]]:
    """r_t = E[sign(D(x))] of each saved D on each image set, unaugmented: D memorizes where it is sure of
    the training images and not of photographs of the same classes it never saw."""
    import torch

    from sngan.data.dataset import to_float
    from sngan.data.folders import folder_images, load_folder
    from sngan.models import build_models
    from sngan.utils import checkpoint as ckpt

    images = {
        name: to_float(load_folder(str(root), 32, folder_images(str(root))).images) for name, root in sets.items()
    }
    out: dict[str, list[tuple[int, float]]] = {f"heldout/rt_{name}": [] for name in sets}
    for path in ckpt.list_checkpoints(run_dir):
        state = ckpt.load(path)
        model = state["config"]["model"]
        _, d = build_models(model["name"], model["z_dim"], model["width"], model["spectral_norm"])
        d.load_state_dict(state["discriminator"])
        d.eval()
        with torch.no_grad():
            for name, x in images.items():
                rt = torch.cat([d(batch).flatten() for batch in x.split(250)]).sign().mean().item()
                out[f"heldout/rt_{name}"].append((int(state["step"]), rt))
    return out


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in ("augment/rt", "augment/p")}


def smoothed(curve: list[tuple[int, float]], n: int = 10) -> list[tuple[int, float]]:
    """The mean of each point and the n - 1 before it: r_t of one batch is noisy."""
    values = [v for _, v in curve]
    windows = (values[max(0, i - n + 1) : i + 1] for i in range(len(values)))
    return [(step, sum(window) / len(window)) for (step, _), window in zip(curve, windows)]


def plot(runs: dict[str, dict], path: Path) -> None:
    """Two panels against the generator step, each with its legend (the numbers are curves.csv beside it).
    Above: r_t as logged while training (each point the mean of ten) of both runs, and ADA's p. Below: each
    saved D's r_t, unaugmented, on the training photographs (filled dots) and on the held-out ones (hollow):
    D memorizes where they part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (above, below) = plt.subplots(2, 1, figsize=(7.2, 6.2), sharex=True)
    curves = {name: run["curves"] for name, run in runs.items()}
    colours = {"none": "tab:red", "ada": "tab:blue"}
    names = {"none": "no augmentation (augment=ada, p = 0: r_t measured)", "ada": "augment=ada (target r_t = 0.6)"}
    for name, colour in colours.items():
        steps, values = zip(*smoothed(curves[name]["augment/rt"])) if curves[name]["augment/rt"] else ((), ())
        above.plot(steps, values, color=colour, label=f"r_t, {names[name]}")
        for tag, filled, where in (("heldout/rt_train", True, "training"), ("heldout/rt_heldout", False, "held-out")):
            points = curves[name].get(tag, [])
            if points:
                steps, values = zip(*points)
                below.plot(steps, values, color=colour, marker="o", markerfacecolor=colour if filled else "white",
                           label=f"{names[name].split(' (')[0]}: {where} photographs")  # fmt: skip
    if curves["ada"]["augment/p"]:
        steps, values = zip(*curves["ada"]["augment/p"])
        above.plot(steps, values, color="tab:green", label="ADA's p")
    above.axhline(0.6, color="grey", linewidth=0.8, linestyle="--")
    above.set_title("r_t while training (mean of 10 logged points), and ADA's p", fontsize=10)
    above.set_ylabel("r_t = E[sign(D(real))], p")
    below.set_title("saved D, unaugmented: r_t on the training photographs (filled) and held-out ones (hollow)",
                    fontsize=10)  # fmt: skip
    below.set_ylabel("r_t of the saved D")
    below.set_xlabel("generator step")
    for ax in (above, below):
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_zip = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg-train.zip"
    parser.add_argument("--zip", type=Path, default=default_zip)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--speed-kimg", type=float, default=100, help="ADA's speed (the paper: 500)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--check-every",
        type=int,
        default=100,
        help="save D every this many steps, for r_t on the training and the held-out photographs",
    )
    parser.add_argument(
        "--held-out",
        type=int,
        default=1000,
        help="photographs never trained on (the next ones of each class) to compare D's r_t with",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of each run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (2: both side by side)")
    parser.add_argument("--decay", default="none", choices=["none", "linear"],
                        help="the learning rate's decay (none: D keeps learning as it memorizes)")  # fmt: skip
    parser.add_argument("--n-dis", type=int, default=5, help="D updates per G update")
    parser.add_argument("--batch-d", type=int, default=64, help="real (and fake) images per D update")
    parser.add_argument("--batch-g", type=int, default=128, help="fake images per G update")
    parser.add_argument("--lr", type=float, default=1e-4, help="G's learning rate (Adam), and D's with --lr-d 0")
    parser.add_argument("--lr-d", type=float, default=8e-4, help="D's learning rate (a faster D memorizes sooner)")
    parser.add_argument("--betas", type=float, nargs=2, default=[0.0, 0.9], help="Adam's beta1 and beta2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spectral-norm", default="true", choices=["true", "false"],
                        help="false: D unnormalized, which memorizes sooner (the SN ablation's other arm)")  # fmt: skip
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs already in --out up to --steps (resume=auto), bit-exact; a run "
                             "already there is measured again, not trained (seconds: null)")  # fmt: skip
    args = parser.parse_args()
    if not args.zip.is_file():
        raise SystemExit(f"error: {args.zip} does not exist; pass --zip with the CIFAR-10 JPEG zip (train).")
    args.out.mkdir(parents=True, exist_ok=True)
    data = subset(args.zip, args.out / "data", args.images)
    sets = {"train": data, "heldout": subset(args.zip, args.out / "heldout", args.held_out, skip=args.images)}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run its own process and --threads
        runs = dict(zip(RUNS, pool.map(lambda name: train(name, data, args), RUNS)))
    for name, run in runs.items():
        run["curves"] |= held_out(args.out / name, sets)
    with open(args.out / "curves.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run", "tag", "step", "value"])
        for name, run in runs.items():
            for tag, points in run["curves"].items():
                out.writerows([name, tag, step, value] for step, value in points)
    plot(runs, args.out / "curves.png")
    with open(args.out / "runs.jsonl", "a") as f:
        for run in runs.values():
            final = {tag: points[-1][1] if points else None for tag, points in run["curves"].items()}
            line = json.dumps(
                {k: v for k, v in run.items() if k != "curves"}
                | {"final": final, "images": args.images, "spectral_norm": args.spectral_norm}
            )
            print(line)
            f.write(line + "\n")


if __name__ == "__main__":
    main()
