"""The ``goggles`` command: one subcommand per job, each with an example in its --help."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from textwrap import dedent

from sim2real_goggles import __version__


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="goggles",
        description="sim2real_goggles: simulator, translators, ROS 2 nodes and evaluation for VR-Goggles.",
        epilog="Example:\n  goggles demo --out demo_out\n  goggles eval-policy --policy expert --profile sim --episodes 200 --seed 0 --json",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="expert drives through rooms; every look rendered side by side (video + contact sheet)",
        formatter_class=fmt,
        epilog="Example:\n  goggles demo --out demo_out --episodes 3",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="camera image size in pixels (default 128)")
    p.add_argument("--looks", type=_csv, default=["sim", "real_lab", "real_office"], help="comma-separated profiles")

    p = sub.add_parser(
        "collect",
        help="drive (expert + random) and write images, masks and a manifest",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles collect --profile real_lab --episodes 20 --out data/real_lab
              goggles collect --paired sim,real_lab --episodes 20 --out data/pairs --preview
              goggles collect --profile real_lab --episodes 30 --every 2 --max-frames 300 --bag bags/real_lab_eval

            Layout: OUT/<profile>/images/NNNNNN.png, OUT/<profile>/masks/NNNNNN.png (class ids:
            0 floor, 1 wall, 2 obstacle, 3 target, 255 ignore), OUT/manifest.json (profiles,
            episode seeds, per-frame poses and actions), OUT/preview.png with --preview."""
        ),
    )
    p.add_argument("--profile", default=None, help="look to record (name or YAML path; default sim)")
    p.add_argument("--paired", type=_csv, default=[], help="comma-separated looks rendered at the same poses")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--out", type=Path, default=None, help="image folder to write (or use --bag)")
    p.add_argument(
        "--bag",
        type=Path,
        default=None,
        help="write an evaluation bag instead: /camera/image_raw (--profile), /camera/image_sim, "
        "/camera/segmentation_gt, /camera/camera_info, /odom",
    )
    p.add_argument("--format", choices=["mcap", "sqlite3"], default="mcap", help="bag storage (default mcap)")
    p.add_argument("--max-frames", type=int, default=None, help="with --bag: stop after N frames")
    p.add_argument("--seed", type=int, default=0, help="episode e uses env seed SEED+e")
    p.add_argument("--size", type=int, default=64)
    p.add_argument(
        "--driver",
        choices=["mixed", "expert", "random"],
        default="mixed",
        help="mixed: expert with 30%% random actions",
    )
    p.add_argument("--every", type=int, default=1, help="keep every N-th frame")
    p.add_argument("--max-steps", type=int, default=400, help="episode step limit")
    p.add_argument("--preview", action="store_true", help="also write OUT/preview.png (looks side by side)")

    p = sub.add_parser(
        "eval-policy",
        help="success rate of a policy over fixed seeds in a look",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles eval-policy --policy expert --profile sim --episodes 200 --seed 0 --json
              goggles eval-policy --policy pretrained:policy --profile sim --episodes 200
              goggles eval-policy --policy pretrained:policy --profile real_lab --translator pretrained:vr_goggles

            Episode i runs in the room of env seed SEED+i, so every method meets the same rooms.
            With --translator every camera frame goes through the goggles before the policy."""
        ),
    )
    p.add_argument(
        "--policy", required=True, help="expert | expert_scan | random | a policy checkpoint (path or pretrained:NAME)"
    )
    p.add_argument("--translator", default=None, help="goggles in front of the policy (checkpoint or pretrained:NAME)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--profile", default="sim", help="look (name or YAML path)")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="episode i uses env seed SEED+i (same rooms for every method)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "bench",
        help="benchmarks with JSON output",
        formatter_class=fmt,
        epilog="Example:\n  goggles bench env --json",
    )
    bench = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    b = bench.add_parser(
        "env",
        help="env step cost vs the bare PyBullet render, and 2-process vector speed-up",
        formatter_class=fmt,
        epilog="Example:\n  goggles bench env --json --steps 3000",
    )
    b.add_argument("--steps", type=int, default=3000)
    b.add_argument("--size", type=int, default=64)
    b.add_argument("--profile", default="sim")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", action="store_true", help="print JSON only")
    b = bench.add_parser(
        "pipeline",
        help="camera -> translator -> policy -> cmd_vel over DDS in separate processes: rate, latency",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles bench pipeline --json
              goggles bench pipeline --rate 30 --seconds 20 --translator pretrained:cyclegan

            Plays a camera at --rate Hz (pre-rendered frames of --profile), runs translator_node
            and policy_node as separate processes, and matches each cmd_vel_stamped to its frame:
            latency is camera stamp -> command arrival. A policy straight on the camera runs in
            the same run as the reference (reference_no_translator). Sets LOCALHOST discovery
            and a ROS_DOMAIN_ID of its own unless one is set."""
        ),
    )
    b.add_argument("--translator", default="pretrained:vr_goggles")
    b.add_argument("--policy", default="pretrained:policy")
    b.add_argument("--profile", default="real_lab")
    b.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    b.add_argument("--seconds", type=float, default=10.0, help="measured seconds per chain")
    b.add_argument("--size", type=int, default=64, help="camera image side")
    b.add_argument("--device", default="cpu")
    b.add_argument("--backend", default="eager", help="translator_node's inference backend (see bench translator)")
    b.add_argument(
        "--threads",
        type=int,
        default=1,
        help="translator_node's CPU inference threads (1 as in config/ros/translator.yaml; 0: PyTorch's default)",
    )
    b.add_argument("--json", action="store_true", help="print JSON only")
    b = bench.add_parser(
        "translator",
        help="generator inference speed: archs x sizes x batches x backends x threads, vs resnet9",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles bench translator --json --out runs/bench_translator.json
              goggles bench translator --archs compact --sizes 128 --batches 1 --backends eager onnxruntime
              goggles bench translator --device cuda

            One JSON record per arch, size, batch, backend and thread count: params, macs (counted
            by PyTorch's FLOP counter), p50_ms, p95_ms, fps, speedup_vs_resnet9 (against resnet9
            eager fp32 at the same size, batch and threads, measured in the same run right before),
            max_abs_diff (output against eager, [-1, 1] units) and setup_s (export/trace/compile).
            The full default grid takes about half an hour on 2 CPU cores (torch.compile compiles
            once per shape). On CUDA the rows run in fp16 unless --fp32."""
        ),
    )
    b.add_argument("--archs", nargs="+", default=None, help="resnet9, compact, compact_fast (default: all)")
    b.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256], help="square image sides")
    b.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    b.add_argument("--backends", nargs="+", default=None, help="default: every backend that runs on the device")
    b.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU intra-op threads")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--fp32", action="store_true", help="on CUDA: measure in fp32 instead of fp16")
    b.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="timed seconds per record (at least 3 calls, after an untimed set-up call and a warm-up call)",
    )
    b.add_argument("--out", type=Path, default=None, help="also write the JSON records to this file")
    b.add_argument("--json", action="store_true", help="print JSON only (default: a Markdown table)")
    b = bench.add_parser(
        "train",
        help="translator training iterations/s (cyclegan, vr_goggles) with train-translator's own step",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles bench train --json
              goggles bench train --archs compact --size 64 --iterations 20

            Times full training iterations (both generators and discriminators, the semantic and
            shift terms of vr_goggles) after 2 untimed ones. data_ms: the part of an iteration
            spent gathering and moving the batch (the frames are rendered once, up front, into
            memory: setup_s)."""
        ),
    )
    b.add_argument("--methods", nargs="+", default=["cyclegan", "vr_goggles"])
    b.add_argument("--archs", nargs="+", default=["compact", "resnet9"])
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--batch-size", type=int, default=None, help="default: train-translator's")
    b.add_argument("--iterations", type=int, default=10, help="timed iterations per record")
    b.add_argument("--frames", type=int, default=64, help="frames rendered per domain")
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--out", type=Path, default=None, help="also write the JSON records to this file")
    b.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "seg-table",
        help="segmentation table: sem_miou per class of every adaptation method (goggles, DANN, ADVENT, ...)",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles seg-table --looks real_lab,real_office --n 500 --out runs/segtable
              goggles seg-table --looks real_lab --methods no_adaptation,dann \\
                  --checkpoint dann:real_lab=runs/segmenter_dann.pt --out runs/segtable_dann

            Rows: no_adaptation (the sim segmenter on the real frames), cyclegan, vr_goggles and
            cyclegan_masked (the sim segmenter behind the translator trained on the look), dann,
            advent, pixelda and self_train (adapted segmenters on the real frames), sim_on_sim
            (upper bound). Every row of a look is judged on the same paired frames of held-apart
            rooms (those of eval-translator). Checkpoints are the shipped ones for each look
            unless given with --checkpoint METHOD:LOOK=CKPT. Writes OUT/segmentation.json and
            .md."""
        ),
    )
    p.add_argument("--looks", type=_csv, default=["real_lab", "real_office"], help="comma-separated profiles")
    p.add_argument("--n", type=int, default=500, help="paired frames per look")
    p.add_argument("--seed", type=int, default=200_000, help="first room seed")
    p.add_argument("--methods", type=_csv, default=None, help="only these rows, comma-separated (default: all)")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="METHOD:LOOK=CKPT",
        help="translator (goggles rows) or segmenter (dann, advent, pixelda) of one cell",
    )
    p.add_argument("--segmenter", default="pretrained:segmenter", help="the sim segmenter of the other rows")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "transfer-table",
        help="success of the sim-trained policy in real-like looks: no goggles, CycleGAN, VR-Goggles, ...",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles transfer-table --looks real_lab,real_office --episodes 200 --out transfer
              goggles transfer-table --looks my_camera.yaml --translator vr_goggles:my_camera=runs/vr.pt

            Rows: sim_on_sim (upper bound), no_goggles, cyclegan, vr_goggles, vr_goggles_distilled
            (the compact students vr_goggles_fast[_real_office]; other distill
            students with --translator), cyclegan_masked (the mask-aware CycleGAN
            goggles), domain_randomization, simgan and pixelda (the
            shipped baseline policies, or --policy-dr / --policy-simgan / --policy-pixelda);
            columns: the looks. --reuse OLD/transfer.json takes cells already measured with the same
            policy, translator, episodes and seed from an earlier run. Translators are the
            shipped ones trained on each look (by method and real domain in the manifest) unless
            given with --translator METHOD:LOOK=CKPT. Writes OUT/transfer.json, transfer.md and
            transfer.png. Cells run in --workers parallel processes, one core each; OUT/transfer.json
            is rewritten after every cell ("complete": false until the last), and --resume takes the
            cells of an interrupted run with the same --out."""
        ),
    )
    p.add_argument("--looks", type=_csv, default=["real_lab", "real_office"], help="comma-separated profiles")
    p.add_argument("--policy", default="pretrained:policy")
    p.add_argument(
        "--policy-dr",
        action="append",
        default=[],
        metavar="[LOOK=]CKPT",
        help="domain-randomisation policy (row domain_randomization; default: the shipped one)",
    )
    p.add_argument(
        "--policy-simgan",
        action="append",
        default=[],
        metavar="[LOOK=]CKPT",
        help="policy trained on SimGAN-refined frames (row simgan; default: the shipped one whose refiner "
        "was trained on the look)",
    )
    p.add_argument(
        "--policy-pixelda",
        action="append",
        default=[],
        metavar="[LOOK=]CKPT",
        help="policy trained on PixelDA-generated frames (row pixelda; default: the shipped one whose "
        "generator was trained on the look)",
    )
    p.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        metavar="TRANSFER_JSON",
        help="take matching cells from an earlier transfer.json (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="take the cells already in OUT/transfer.json (an interrupted or earlier run with this --out)",
    )
    p.add_argument("--methods", type=_csv, default=None, help="only these rows, comma-separated (default: all)")
    p.add_argument(
        "--translator", action="append", default=[], metavar="METHOD:LOOK=CKPT", help="translator for one cell"
    )
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("transfer"))
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")

    p = sub.add_parser(
        "train-policy",
        help="train the image policy in sim: behaviour cloning + DAgger (default) or PPO",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles train-policy --profile sim --out runs/policy.pt
              goggles train-policy --profile sim --refiner pretrained:simgan --out runs/policy_simgan.pt
              goggles train-policy --profile randomized --out runs/policy_dr.pt
              goggles train-policy --out runs/policy.pt --resume
              goggles train-policy --method ppo --set init=runs/policy.best.pt --set total_timesteps=100000 \
                  --out runs/policy_ppo.pt

            Round 0 records the privileged expert; each later round drives the learner, labels
            every frame it sees with the expert's action and trains on all frames so far. The
            checkpoint (and OUT.dagger/ with the frames) is written after every round; Ctrl-C or
            kill stops, --resume redoes the unfinished round. TensorBoard logs in OUT.runs/.
            --set KEY=VALUE overrides any field of PolicyConfig (training/policy.py). --method ppo
            runs stable-baselines3 PPO on 2 env processes with the same network (PPOConfig in
            training/ppo.py; OUT.sb3.zip keeps its state for --resume)."""
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--method", choices=["bc", "ppo"], default="bc", help="bc: behaviour cloning + DAgger; ppo")
    p.add_argument(
        "--profile",
        default=None,
        help="training look(s), comma-separated, or randomized: the domain-randomisation family (default sim)",
    )
    p.add_argument("--refiner", default=None, help="sim->real refiner applied to every frame (SimGAN baseline)")
    p.add_argument("--rounds", type=int, default=None, help="DAgger rounds after the expert round")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "ensemble-policy",
        help="join trained policies into one that acts on the mean of their action distributions",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles train-policy --profile sim --seed 1 --out runs/policy_s1.pt
              goggles ensemble-policy runs/policy.best.pt runs/policy_s1.best.pt --out runs/policy_ens.pt

            The result is one policy checkpoint (architecture policy_ensemble) for eval-policy,
            transfer-table and policy_node. Members trained from different seeds or data make
            different mistakes where the frame does not show the way; the ensemble takes the
            action most of them agree on. Each member's source, SHA-256 and training config
            are recorded in the checkpoint's metadata."""
        ),
    )
    p.add_argument("members", nargs="+", help="policy checkpoints (paths or pretrained:NAME), two or more")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument(
        "--fp16-weights",
        action="store_true",
        help="store the weights in half precision (half the file; computed in float32 when loaded)",
    )
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "train-segmenter",
        help="train the sim segmenter on rendered images + masks; report sem_miou per look",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles train-segmenter --domain sim --out runs/segmenter.pt
              goggles train-segmenter --domain sim --augment 1.0 --iterations 3000 --set context=true \\
                  --set augment_style=recolour --out runs/labeller_context.pt
              goggles train-segmenter --adapt dann --real real_lab --out runs/segmenter_dann.pt
              goggles train-segmenter --adapt advent --real real_lab --out runs/segmenter_advent.pt
              goggles train-segmenter --adapt self_train --teacher pretrained:vr_goggles_fast \\
                  --real real_lab --augment 1.0 --iterations 1000 --out runs/segmenter_self_train.pt

            Evaluates the trained segmenter, untranslated, on --eval-looks (held-out rooms):
            its sem_miou on the real-like looks is the reality gap the goggles must close."""
        ),
    )
    p.add_argument("--domain", default="sim", help="training look (profile) or image folder with masks/")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--frames", type=int, default=3000, help="training frames")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-looks", type=_csv, default=["sim", "real_lab", "real_office"])
    p.add_argument("--eval-frames", type=int, default=400)
    p.add_argument(
        "--augment",
        type=float,
        default=0.0,
        help="fraction of each batch with randomised appearance (1.0 with --set context=true --set augment_style=recolour: the labeller of vr_goggles)",
    )
    p.add_argument(
        "--adapt",
        choices=["dann", "advent", "self_train"],
        help="adaptation baseline: DANN (gradient reversal), ADVENT (entropy + adversarial on "
        "self-information) or self_train (class-balanced self-training of the labeller), with "
        "unlabelled frames of --real",
    )
    p.add_argument("--real", help="unlabelled target domain of --adapt (profile, image folder or bag)")
    p.add_argument(
        "--teacher",
        help="self_train: a real->sim translator (path or pretrained:NAME) whose translations, "
        "segmented by the sim segmenter, give the first pseudo-labels",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any field of SegmenterConfig (training/segmenter.py), e.g. lambda_dann=0.3",
    )
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "train-translator",
        help="train an unpaired translator: real->sim (cyclegan, vr_goggles) or the sim->real refiner (simgan)",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles train-translator --method cyclegan --real real_lab --sim sim --out runs/cyclegan.pt
              goggles train-translator --method vr_goggles --segmenter runs/segmenter.pt \
                  --labeller runs/labeller_context.pt --real real_lab --out runs/vr.pt
              goggles train-translator --method vr_goggles --segmenter runs/segmenter.pt \
                  --labeller runs/labeller_context.pt --real real_lab --out runs/vr.pt --resume
              goggles train-translator --method cyclegan --mask-loss --real real_lab --out runs/cyclegan_masked.pt
              goggles train-translator --method simgan --sim sim --real real_lab --out runs/simgan.pt
              goggles train-translator --method pixelda --sim sim --real real_lab --out runs/pixelda.pt
              goggles train-translator --method distill --teacher pretrained:vr_goggles --real real_lab \
                  --out runs/vr_goggles_fast.pt
              torchrun --nproc_per_node 2 -m sim2real_goggles.training --method cyclegan --out runs/cg.pt

            The recipe config/training/<method>.yaml sets the defaults; options given here
            override it (--set KEY=VALUE for any recipe key). Ctrl-C saves a checkpoint; --resume
            continues it exactly. TensorBoard logs go to OUT.runs/. Under torchrun every
            process trains the same networks on its own batches (gradients averaged: gloo on
            CPU, nccl on CUDA); rank 0 writes the checkpoint. On CUDA, AMP (fp16) is on unless
            --set amp=false. distill copies a trained translator (--teacher) into a smaller
            batch-norm student for fast inference (recipe config/training/distill.yaml);
            --set rounds=N trains N students in a row, each labelled by the one before (rounds
            before the last written as OUT-stem.roundK.pt; --resume keeps the finished ones).
            pixelda trains a sim->real generator with its task segmenter, written as
            OUT.segmenter.pt (the pixelda row of goggles seg-table)."""
        ),
    )
    p.add_argument("--method", choices=["cyclegan", "vr_goggles", "simgan", "pixelda", "distill"], required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint path (the generator + training state)")
    p.add_argument("--recipe", type=Path, default=None, help="YAML recipe (default: config/training/<method>.yaml)")
    p.add_argument("--real", default=None, help="real domain: profile name/path or image folder")
    p.add_argument("--sim", default=None, help="sim domain: profile name/path or image folder with masks/")
    p.add_argument("--segmenter", default=None, help="frozen sim segmenter checkpoint (vr_goggles, distill)")
    p.add_argument("--teacher", default=None, help="translator to copy (distill)")
    p.add_argument(
        "--labeller", default=None, help="appearance-robust segmenter giving pseudo-labels on real images (vr_goggles)"
    )
    p.add_argument(
        "--mask-loss",
        action="store_const",
        const=True,
        default=None,
        help="mask-aware CycleGAN: cycle and identity losses weighted inside and outside the object "
        "masks (sim: the simulator's; real: the labeller's), so small objects survive",
    )
    p.add_argument("--arch", choices=["compact", "resnet9"], default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="image size")
    p.add_argument("--frames", type=int, default=None, help="images per domain")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe key (YAML value), e.g. --set lambda_shift=2.0",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "eval-translator",
        help="translation quality on paired held-apart frames: sem_miou, PSNR/SSIM, fd_seg, shift_err",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles eval-translator pretrained:vr_goggles --real real_lab --sim sim --n 500 --json
              goggles eval-translator runs/vr.pt --segmenter runs/segmenter.pt --real real_office --json

            sem_miou_ci95 is a 95% bootstrap interval of sem_miou over the rooms the frames
            come from (rooms; 500 frames are about 32 rooms, and frames of one room are alike).
            Other sets of rooms (--seed, --n) have moved figures by more than it: read it as the
            least the rooms can move a figure (README, "How far 500 frames carry").
            Also reports the segmenter on the untranslated real frames (sem_miou_no_goggles) and
            on true sim frames (sem_miou_sim, the upper bound) and on the sim look through the
            real camera (sem_miou_ref, a perfect translation), and writes a side-by-side grid:
            real | translated | sim through the real camera | predicted mask | true mask.
            For a sim->real refiner (simgan) it reports instead PSNR/SSIM of refined sim frames
            against the paired real frames, with the unrefined frames as the baseline."""
        ),
    )
    p.add_argument("translator", help="translator checkpoint: a path or pretrained:NAME")
    p.add_argument(
        "--segmenter", default="pretrained:segmenter", help="frozen sim segmenter: a path or pretrained:NAME"
    )
    p.add_argument("--real", default="real_lab", help="real-like look (profile name or path)")
    p.add_argument("--sim", default="sim")
    p.add_argument("--n", type=int, default=500, help="frames")
    p.add_argument("--seed", type=int, default=200_000, help="first evaluation room seed")
    p.add_argument("--size", type=int, default=None, help="image size (default: the translator's)")
    p.add_argument(
        "--backend",
        default="eager",
        help="inference runtime: eager, channels_last, compile, torchscript, onnxruntime (same translation, "
        "measured here)",
    )
    p.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="run the translator on frames enlarged by this (default: the scale its checkpoint records, else 1)",
    )
    p.add_argument(
        "--grid", type=Path, default=None, help="where to write the image grid (default: next to the checkpoint)"
    )
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "export",
        help="export a translator checkpoint to ONNX and check it against PyTorch",
        formatter_class=fmt,
        epilog="Example:\n  goggles export runs/vr_goggles.pt --onnx runs/vr_goggles.onnx",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--onnx", type=Path, required=True, help="output .onnx path")
    p.add_argument("--size", type=int, default=None, help="example input side (default: the checkpoint's image size)")

    p = sub.add_parser(
        "translate",
        help="translate an image file or a folder of images with a translator checkpoint",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles translate camera.png goggles.png --translator pretrained:vr_goggles
              goggles translate frames/ translated/ --translator runs/vr.pt --resize

            A folder is translated image by image (PNG, JPEG, BMP, TIFF; sub-folders are not
            entered) into OUT with the same file names; unreadable images are reported and
            skipped. --resize scales images to the training size first (for camera images
            larger than the training images) and the result back to the input size."""
        ),
    )
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", type=Path, help="output file (for a file) or folder (for a folder)")
    p.add_argument("--translator", default="pretrained:vr_goggles", help="checkpoint path or pretrained:NAME")
    p.add_argument("--device", default="auto")
    p.add_argument("--resize", action="store_true", help="translate at the training image size")

    p = sub.add_parser(
        "pretrained",
        help="list the checkpoints shipped with the package, or ship a new one",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles pretrained list
              goggles pretrained add vr_goggles runs/vr.pt --description "real_lab -> sim" \\
                  --command "goggles train-translator ..." --evaluation runs/vr.eval.json

            add strips the training state, copies the checkpoint into the package as
            pretrained:NAME and records it in the manifest (command, seed, time, metrics)."""
        ),
    )
    p.add_argument("action", choices=["list", "add"])
    p.add_argument("name", nargs="?", help="name to ship under (add)")
    p.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint to ship (add)")
    p.add_argument("--description", default="")
    p.add_argument("--command", dest="train_command", default="", help="the exact command that trained it")
    p.add_argument("--evaluation", type=Path, default=None, help="JSON file of the evaluation to record")
    p.add_argument(
        "--train-minutes", type=float, default=None, help="training time, for checkpoints that do not record it"
    )
    p.add_argument(
        "--fp16-weights",
        action="store_true",
        help="ship the weights in half precision (half the file; computed in float32 when loaded): "
        "evaluate the shipped file, not the source",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "launch",
        help="run a ROS 2 YAML launch file (launch/*.launch.yaml) without a ROS 2 install",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles launch navigation
              goggles launch navigation profile:=real_office episodes:=5 seed:=100
              goggles launch navigation goggles:=false          # the no-goggles baseline
              goggles launch navigation robot:=external camera_topic:=/camera/color/image_raw
              goggles launch navigation --show-args
              goggles launch translator device:=cpu --print
              goggles launch ./my_robot.launch.yaml
              goggles launch sim2real_goggles navigation.launch.yaml   # the ros2 launch form

            FILE is a launch file of this package by name (navigation, translator,
            segmentation, sim_robot; with or without .launch.yaml) or a path. The same files run
            under `ros2 launch sim2real_goggles navigation.launch.yaml` on a ROS 2 install.
            Every node runs as its own process with --ros-args and its output prefixed [name].
            Ctrl-C stops all nodes (SIGINT, then SIGTERM, then SIGKILL); the launch also ends
            when a node with on_exit: shutdown exits, with that node's exit status."""
        ),
    )
    p.add_argument("file", metavar="FILE", help="launch file: a name such as navigation, or a path (or PACKAGE FILE)")
    p.add_argument("launch_arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    p.add_argument("--show-args", "-s", action="store_true", help="list the launch arguments and exit")
    p.add_argument("--print", "-p", dest="print_only", action="store_true", help="print the processes and exit")
    p.add_argument(
        "--sigterm-timeout",
        type=float,
        default=5.0,
        help="seconds after SIGINT before SIGTERM at shutdown (default 5; SIGKILL as long after that)",
    )

    p = sub.add_parser(
        "record",
        help="record ROS 2 topics into a rosbag2 bag (MCAP or sqlite3), like ros2 bag record",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles record runs/lab_bag --topics /camera/image_raw /camera/camera_info --duration 30
              goggles record runs/lab_bag --topics /camera/image_raw --format sqlite3

            Each topic's type is taken from the ROS graph (waits up to --wait seconds for a
            publisher). Ctrl-C (or --duration) closes the bag cleanly: metadata.yaml is written and
            every message received is kept."""
        ),
    )
    p.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    p.add_argument("--topics", nargs="+", required=True, metavar="TOPIC", help="topics to record")
    p.add_argument("--format", choices=["mcap", "sqlite3"], default="mcap", help="storage (default mcap)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for each topic to appear (default 10)")
    p.add_argument(
        "--qos",
        choices=["auto", "reliable", "best_effort"],
        default="auto",
        help="subscription reliability; auto matches the publishers (default)",
    )

    p = sub.add_parser(
        "replay",
        help="publish a bag's messages with their original timing, like ros2 bag play",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles replay runs/lab_bag
              goggles replay runs/lab_bag --rate 2 --loop --topics /camera/image_raw --remap /camera/image_raw:=/image"""
        ),
    )
    p.add_argument("bag", type=Path, help="bag folder (metadata.yaml) or a .mcap/.db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC", help="only these topics (default all)")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish topic FROM as TO")
    p.add_argument("--delay", type=float, default=0.5, help="seconds to wait for subscribers before the first message")
    p.add_argument(
        "--qos",
        choices=["reliable", "best_effort"],
        default="reliable",
        help="publisher reliability (default reliable, which both kinds of subscriber accept)",
    )

    p = sub.add_parser(
        "eval-bag",
        help="translate a bag's camera topic and report quality, consistency and speed",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles eval-bag bags/real_lab_eval --topic /camera/image_raw \\
                  --translator pretrained:cyclegan --translator pretrained:vr_goggles \\
                  --reference-topic /camera/image_sim --labels-topic /camera/segmentation_gt --out runs/bag_report
              goggles eval-bag my_robot.mcap --topic /camera/image_raw --translator pretrained:vr_goggles --write-bag runs/translated

            No goggles (the untranslated input) is always evaluated as the first column. With a
            reference topic (the paired sim render) and a labels topic (class ids) the bag allows
            sem_miou, PSNR/SSIM, fd_seg and flicker against the reference; without them (a real
            robot's bag) segmenter confidence, flicker relative to the input, shift_err and fd_seg
            against rendered sim frames. Writes OUT/report.json, report.md and report.html."""
        ),
    )
    p.add_argument("bag", type=Path, help="bag folder (metadata.yaml) or a .mcap/.db3 file")
    p.add_argument("--topic", required=True, help="camera topic to translate (sensor_msgs/Image or CompressedImage)")
    p.add_argument(
        "--translator",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="translator (path or pretrained:NAME); repeat to compare several",
    )
    p.add_argument("--reference-topic", default=None, help="paired sim-look images, pixel-aligned with --topic")
    p.add_argument("--labels-topic", default=None, help="ground-truth class ids (mono8) of --topic")
    p.add_argument("--out", type=Path, default=Path("bag_report"), help="report folder (default bag_report)")
    p.add_argument("--write-bag", type=Path, default=None, help="also write the translated stream(s) to this new bag")
    p.add_argument("--segmenter", default="pretrained:segmenter", help="the frozen sim segmenter (judge)")
    p.add_argument("--size", type=int, default=None, help="evaluation size (default: the translators' training size)")
    p.add_argument("--batch", type=int, default=32, help="frames per translation batch (default 32)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate at most N frames (default all)")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")

    p = sub.add_parser(
        "profiles",
        help="list, show or check appearance profiles; preview the domain-randomisation family",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles profiles list
              goggles profiles show real_lab
              goggles profiles show randomized:3
              goggles profiles check my_camera.yaml
              goggles profiles sample --n 8 --seed 0 --out dr_preview.png

            randomized:SEED is one member of the domain-randomisation family (train-policy
            --profile randomized draws a fresh one per episode); sample writes one view (a room's
            start, turned towards the chair) in members SEED .. SEED+N-1."""
        ),
    )
    p.add_argument("action", choices=["list", "show", "check", "sample"])
    p.add_argument("profiles", nargs="*", help="profile names, YAML paths or randomized:SEED (show/check)")
    p.add_argument("--n", type=int, default=8, help="sample: family members to show (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sample: first member (default 0)")
    p.add_argument("--room", type=int, default=7, help="sample: env seed of the room shown (default 7)")
    p.add_argument("--size", type=int, default=128, help="sample: image size in pixels (default 128)")
    p.add_argument("--out", type=Path, default=Path("dr_preview.png"), help="sample: PNG to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Warnings of the library (a skipped bag message, a salvaged recording) reach the terminal
    # as "goggles: WARNING: ..." lines; does nothing when the caller has configured logging.
    logging.basicConfig(level=logging.WARNING, format="goggles: %(levelname)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as exc:  # ProfileError is a ValueError
        print(f"goggles {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from sim2real_goggles.demo import run_demo

    summary = run_demo(args.out, episodes=args.episodes, seed=args.seed, image_size=args.size, looks=tuple(args.looks))
    for ep in summary["episodes"]:
        state = "reached the chair" if ep["success"] else "did not reach the chair"
        print(f"episode seed {ep['seed']}: {state} in {ep['steps']} steps, {ep['collisions']} collisions")
    print(f"wrote {summary['video']}, {summary['contact_sheet']} and {args.out / 'demo.json'}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from sim2real_goggles.appearance.profile import load_profile
    from sim2real_goggles.data.collect import collect_dataset

    if (args.out is None) == (args.bag is None):
        raise ValueError("give one of --out (image folder) or --bag (evaluation bag)")
    if args.bag is not None:
        return _collect_bag(args)
    looks = ([args.profile] if args.profile else []) + args.paired
    looks = list(dict.fromkeys(looks)) or ["sim"]
    for look in looks:  # fail on a bad profile before any rendering
        load_profile(look)
    manifest = collect_dataset(
        args.out,
        looks,
        episodes=args.episodes,
        seed=args.seed,
        image_size=args.size,
        driver=args.driver,
        every=args.every,
        max_steps=args.max_steps,
        preview=args.preview,
    )
    print(json.dumps({"out": str(args.out), "profiles": manifest["profiles"], "frames": len(manifest["frames"])}))
    return 0


def _collect_bag(args: argparse.Namespace) -> int:
    from sim2real_goggles.data.bag_collect import collect_bag

    if args.paired:
        raise ValueError("--bag records one look (--profile) with its pixel-aligned sim reference; drop --paired")
    summary = collect_bag(
        args.bag,
        profile=args.profile or "real_lab",
        episodes=args.episodes,
        seed=args.seed,
        image_size=args.size,
        driver=args.driver,
        every=args.every,
        max_steps=args.max_steps,
        max_frames=args.max_frames,
        storage=args.format,
    )
    print(json.dumps(summary))
    return 0


def _eval_policy(args: argparse.Namespace) -> int:
    from sim2real_goggles.appearance.profile import load_profile
    from sim2real_goggles.evaluation.policy_eval import make_policy, run_episodes, summarize

    profile = load_profile(args.profile)
    policy = make_policy(args.policy, translator=args.translator, device=args.device)
    results = run_episodes(policy, args.profile, args.episodes, args.seed, image_size=args.size, progress=not args.json)
    summary = summarize(
        results,
        policy=args.policy,
        translator=args.translator,
        profile=profile.name,
        seed=args.seed,
        image_size=args.size,
    )
    if args.json:
        print(json.dumps(summary))
    else:
        low, high = summary["ci95"]
        print(
            f"{args.policy} on {profile.name}: success {summary['success_rate']:.1%} "
            f"(95% CI {low:.1%}-{high:.1%}) over {summary['episodes']} episodes, "
            f"mean steps to success {summary['mean_steps']}, collisions {summary['collisions']}"
        )
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.bench == "pipeline":
        from sim2real_goggles.ros.pipeline_bench import bench_pipeline

        result = bench_pipeline(
            translator=args.translator,
            policy=args.policy,
            profile=args.profile,
            rate=args.rate,
            seconds=args.seconds,
            size=args.size,
            device=args.device,
            backend=args.backend,
            threads=args.threads,
        )
        print(json.dumps(result, indent=None if args.json else 1))
        return 0
    if args.bench in ("translator", "train"):
        from sim2real_goggles import bench_models

        logging.getLogger(bench_models.__name__).setLevel(logging.INFO)
        if args.bench == "translator":
            records = bench_models.bench_translator(
                archs=args.archs,
                sizes=args.sizes,
                batches=args.batches,
                backends=args.backends,
                threads=args.threads,
                device=args.device,
                half=False if args.fp32 else None,
                budget_s=args.budget,
            )
        else:
            records = bench_models.bench_train(
                methods=args.methods,
                archs=args.archs,
                image_size=args.size,
                batch_size=args.batch_size,
                iterations=args.iterations,
                frames=args.frames,
                device=args.device,
                threads=args.threads,
            )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(records, indent=1) + "\n")
        if args.json:
            print(json.dumps(records))
        elif args.bench == "translator":
            print(bench_models.format_table(records))
        else:
            print(json.dumps(records, indent=1))
        return 0
    from sim2real_goggles.bench import bench_env

    result = bench_env(steps=args.steps, image_size=args.size, profile=args.profile, seed=args.seed)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    from sim2real_goggles.training.base import config_from_overrides
    from sim2real_goggles.training.segmenter import SegmenterConfig, train_segmenter

    given = {
        "domain": args.domain,
        "image_size": args.size,
        "frames": args.frames,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "eval_looks": tuple(args.eval_looks),
        "eval_frames": args.eval_frames,
        "augment": args.augment,
        "adapt": args.adapt or "",
        "real": args.real or "",
        **({"teacher": args.teacher} if args.teacher else {}),
    }
    cfg = config_from_overrides(SegmenterConfig, given | _overrides(args.overrides), "segmenter")
    result = train_segmenter(cfg, args.out, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"wrote {result['checkpoint']} ({result['train_minutes']} min, loss {result['first_loss']} -> {result['final_loss']})"
        )
        for look, r in result["eval"].items():
            per_class = ", ".join(f"{k} {v}" for k, v in r["per_class_iou"].items())
            print(f"  {look}: sem_miou {r['sem_miou']} ({per_class})")
    return 0


def _train_translator(args: argparse.Namespace) -> int:
    import os

    from sim2real_goggles.resources import share_path
    from sim2real_goggles.training import distributed
    from sim2real_goggles.training.translator import TranslatorTrainer, load_recipe
    from sim2real_goggles.translation import resolve_device

    recipe = args.recipe or share_path("config", "training", f"{args.method}.yaml")
    options = {
        "method": args.method,
        "real": args.real,
        "sim": args.sim,
        "segmenter": args.segmenter,
        "labeller": args.labeller,
        "teacher": args.teacher,
        "mask_loss": args.mask_loss or None,
        "arch": args.arch,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "image_size": args.size,
        "frames": args.frames,
        "seed": args.seed,
    }
    # --set may give a key that also has an option (--set iterations=100); both at once is an error
    for key, value in _overrides(args.overrides).items():
        if options.get(key) is not None:
            raise ValueError(f"--set {key}={value} repeats an option given on the command line: give it once")
        options[key] = value
    cfg = load_recipe(recipe, **options)
    device = resolve_device(args.device)
    if device.type == "cuda" and distributed.launched_by_torchrun():
        device = _cuda_device_for_rank(int(os.environ.get("LOCAL_RANK", "0")))
    if args.method == "distill" and cfg.rounds > 1:
        # each round loads the student the round before wrote: one process, not torchrun
        if distributed.launched_by_torchrun():
            raise ValueError("--set rounds > 1 runs in one process: under torchrun train one round per command")
        from sim2real_goggles.training.distill import train_rounds

        result = train_rounds(cfg, args.out, device=str(device), resume=args.resume, progress=not args.json)
        print(json.dumps(result) if args.json else f"wrote {', '.join(result['rounds'])}")
        return 0
    if args.method == "simgan":
        from sim2real_goggles.training.simgan import SimGANTrainer

        trainer = SimGANTrainer(cfg, args.out, device=str(device))
    elif args.method == "distill":
        from sim2real_goggles.training.distill import DistillTrainer

        trainer = DistillTrainer(cfg, args.out, device=str(device))
    elif args.method == "pixelda":
        from sim2real_goggles.training.pixelda import PixelDATrainer

        trainer = PixelDATrainer(cfg, args.out, device=str(device))
    else:
        trainer = TranslatorTrainer(cfg, args.out, device=str(device))
    if args.resume:
        trainer.restore(args.out)
    try:
        result = trainer.train(progress=not args.json)
    finally:
        distributed.shutdown()
    if trainer.rank == 0:
        print(
            json.dumps(result)
            if args.json
            else f"wrote {result['checkpoint']} after {result['iterations']} iterations ({result['minutes']} min)"
        )
    return 0


def _cuda_device_for_rank(local_rank: int):
    import torch

    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _eval_translator(args: argparse.Namespace) -> int:
    from sim2real_goggles.evaluation.translation_eval import evaluate_refiner, evaluate_translator
    from sim2real_goggles.models.checkpoint import load_checkpoint
    from sim2real_goggles.pretrained import PREFIX, is_pretrained

    real_name = Path(args.real).stem
    if args.grid:
        grid = args.grid
    elif is_pretrained(args.translator):
        grid = Path(f"{args.translator[len(PREFIX) :]}.{real_name}.grid.png")
    else:
        grid = Path(args.translator).with_suffix(f".{real_name}.grid.png")
    refiner = load_checkpoint(args.translator).metadata.get("direction") == "sim->real"
    if refiner:
        if args.backend != "eager" or args.input_scale is not None:
            raise SystemExit(
                f"goggles eval-translator: --backend and --input-scale apply to real->sim translators, not {args.translator}"
            )
        report = evaluate_refiner(
            args.translator, args.segmenter, args.real, args.sim, args.n, args.seed, args.size, grid
        )
    else:
        report = evaluate_translator(
            args.translator,
            args.segmenter,
            args.real,
            args.sim,
            args.n,
            args.seed,
            args.size,
            grid,
            args.backend,
            input_scale=args.input_scale,
        )
    report["grid"] = str(grid)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _translate(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from sim2real_goggles.translation import Translator

    translator = Translator.load(args.translator, device=args.device, resize=args.resize)
    if args.input.is_dir():
        pairs = [
            (path, args.output / path.name)
            for path in sorted(args.input.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not pairs:
            raise ValueError(f"{args.input}: no images ({', '.join(IMAGE_SUFFIXES)})")
        args.output.mkdir(parents=True, exist_ok=True)
    elif args.input.is_file():
        pairs = [(args.input, args.output)]
    else:
        raise FileNotFoundError(f"{args.input}: no such file or folder")
    skipped = 0
    for src, dst in pairs:
        bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipped {src}: not a readable image", file=sys.stderr)
            skipped += 1
            continue
        out = translator(np.ascontiguousarray(bgr[:, :, ::-1]))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(dst), np.ascontiguousarray(out[:, :, ::-1])):
            raise ValueError(f"{dst}: could not write (unknown image extension?)")
    done = len(pairs) - skipped
    print(f"translated {done} image{'s' if done != 1 else ''} into {args.output} ({skipped} skipped)")
    return 0 if done else 2


def _pretrained(args: argparse.Namespace) -> int:
    from sim2real_goggles.pretrained import load_manifest, register

    if args.action == "add":
        if not (args.name and args.checkpoint):
            raise ValueError("add needs NAME and CHECKPOINT")
        evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
        entry = register(
            args.name,
            args.checkpoint,
            args.description,
            args.train_command,
            evaluation,
            train_minutes=args.train_minutes,
            fp16_weights=args.fp16_weights,
        )
        print(json.dumps(entry) if args.json else f"shipped pretrained:{args.name} ({entry['bytes']} bytes)")
        return 0
    entries = load_manifest()
    if args.json:
        print(json.dumps(entries))
        return 0
    for name, entry in entries.items():
        print(f"pretrained:{name:<14} {entry.get('method')!s:<16} {entry.get('description', '')}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sim2real_goggles.export import PARITY_TOLERANCE, export_onnx, onnx_parity

    out = export_onnx(args.checkpoint, args.onnx, size=args.size)
    worst = onnx_parity(args.checkpoint, out)
    print(
        json.dumps(
            {"onnx": str(out), "max_abs_diff": worst, "tolerance": PARITY_TOLERANCE, "ok": worst <= PARITY_TOLERANCE}
        )
    )
    return 0 if worst <= PARITY_TOLERANCE else 1


def _profiles(args: argparse.Namespace) -> int:
    import dataclasses

    from sim2real_goggles.appearance.profile import list_profiles, load_profile
    from sim2real_goggles.appearance.randomize import FAMILY, FAMILY_DESCRIPTION

    if args.action == "list":
        for name in list_profiles():
            print(f"{name}: {load_profile(name).description}")
        print(f"{FAMILY}: the {FAMILY_DESCRIPTION} (one member: {FAMILY}:SEED)")
        return 0
    if args.action == "sample":
        import cv2

        from sim2real_goggles.appearance.randomize import preview_sheet

        sheet = preview_sheet(n=args.n, seed=args.seed, room=args.room, size=args.size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"{args.out}: could not write the image (use a .png or .jpg name)")
        print(f"wrote {args.out} ({FAMILY}:{args.seed} .. {FAMILY}:{args.seed + args.n - 1}, room {args.room})")
        return 0
    if not args.profiles:
        raise ValueError(f"'profiles {args.action}' needs at least one profile name or path")
    for spec in args.profiles:
        prof = load_profile(spec)
        if args.action == "show":
            print(json.dumps(dataclasses.asdict(prof), indent=1))
        else:
            print(f"{prof.source}: ok ({prof.name})")
    return 0


def _cell_checkpoints(items: list[str], flag: str) -> dict[tuple[str, str], str]:
    """``METHOD:LOOK=CKPT`` options as {(method, look): ckpt}."""
    out = {}
    for item in items:
        key, sep, ckpt = item.partition("=")
        method, colon, look = key.partition(":")
        if not (sep and colon and ckpt):
            raise SystemExit(f"{flag} expects METHOD:LOOK=CKPT, got {item!r}")
        out[(method, look)] = ckpt
    return out


def _seg_table(args: argparse.Namespace) -> int:
    from sim2real_goggles.evaluation.segmentation_table import segmentation_table, to_markdown, write_outputs

    table = segmentation_table(
        args.looks,
        n=args.n,
        seed=args.seed,
        given=_cell_checkpoints(args.checkpoint, "--checkpoint"),
        methods=args.methods,
        segmenter=args.segmenter,
    )
    table["outputs"] = write_outputs(table, args.out)
    print(json.dumps(table) if args.json else to_markdown(table))
    return 0


def _transfer_table(args: argparse.Namespace) -> int:
    from sim2real_goggles.evaluation.transfer import to_markdown, transfer_table, write_outputs, write_progress

    translators = _cell_checkpoints(args.translator, "--translator")
    earlier = list(args.reuse)
    if args.resume:
        resume = args.out / "transfer.json"
        if resume.exists():
            earlier.append(resume)
        else:
            print(f"--resume: no {resume} yet; measuring every cell", file=sys.stderr)
    reuse = []
    for path in earlier:
        try:
            reuse.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable transfer.json: {exc}") from exc

    finished = 0  # cells on disk in OUT/transfer.json

    def progress(partial: dict) -> None:
        nonlocal finished
        write_progress(partial, args.out)
        finished = len(partial["cells"])

    try:
        table = transfer_table(
            args.looks,
            policy=args.policy,
            episodes=args.episodes,
            seed=args.seed,
            workers=args.workers,
            translators=translators,
            policy_dr=_policy_option(args.policy_dr, "--policy-dr"),
            policy_simgan=_policy_option(args.policy_simgan, "--policy-simgan"),
            policy_pixelda=_policy_option(args.policy_pixelda, "--policy-pixelda"),
            reuse=reuse,
            methods=args.methods,
            on_cell=progress,
        )
    except KeyboardInterrupt:
        kept = f"{args.out / 'transfer.json'} holds the {finished} cells finished" if finished else "no cell finished"
        print(f"interrupted: {kept}; continue with --resume --out {args.out}", file=sys.stderr)
        return 130
    table["outputs"] = write_outputs(table, args.out)
    print(json.dumps(table) if args.json else to_markdown(table))
    return 0


def _policy_option(items: list[str], flag: str) -> str | dict[str, str] | None:
    """``CKPT`` (every look) or ``LOOK=CKPT`` (repeatable) -> str or {look: ckpt}."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    per_look = {}
    for item in items:
        look, sep, ckpt = item.partition("=")
        if not (sep and look and ckpt):
            raise ValueError(f"{flag} expects CKPT once, or LOOK=CKPT per look; got {item!r}")
        per_look[look] = ckpt
    return per_look


def _overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` options as a dict (values parsed as YAML: numbers, lists, booleans)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _train_policy(args: argparse.Namespace) -> int:
    from sim2real_goggles.training.policy import PolicyTrainer, load_policy_recipe

    overrides = _overrides(args.overrides)
    if args.method == "ppo":
        return _train_policy_ppo(args, overrides)
    for key in ("profile", "refiner", "rounds", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    cfg = load_policy_recipe(overrides)
    trainer = PolicyTrainer(cfg, args.out, device=args.device)
    if args.resume:
        trainer.restore(args.out)
    try:
        result = trainer.train(progress=not args.json)
    except KeyboardInterrupt:
        print(f"stopped after {trainer.round} rounds; continue with --resume (checkpoint {args.out})", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        last = result["history"][-1] if result["history"] else {}
        print(
            f"wrote {result['checkpoint']} ({result['minutes']} min, {result['rounds']} rounds, "
            f"{int(last.get('frames_total', 0))} frames): success on {cfg.eval_episodes} validation rooms "
            f"{last.get('eval_success', float('nan')):.0%}"
        )
        if result.get("best"):
            best = max(result["history"], key=lambda h: h["eval_success"])
            print(f"best round ({best['eval_success']:.0%}): {result['best']}")
    return 0


def _ensemble_policy(args: argparse.Namespace) -> int:
    from sim2real_goggles.models.checkpoint import CheckpointError, load_checkpoint
    from sim2real_goggles.training.policy import write_ensemble

    try:
        path = write_ensemble(args.members, args.out, fp16_weights=args.fp16_weights)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"goggles ensemble-policy: {exc}") from None
    meta = load_checkpoint(path).metadata
    if args.json:
        print(json.dumps({"checkpoint": str(path), "members": meta["members"], "parameters": meta["parameters"]}))
    else:
        print(f"wrote {path}: {len(meta['members'])} members, {meta['parameters']} parameters")
    return 0


def _train_policy_ppo(args: argparse.Namespace, overrides: dict) -> int:
    from sim2real_goggles.training.ppo import PPOTrainer, load_ppo_recipe

    if args.refiner is not None or args.rounds is not None:
        raise SystemExit("goggles train-policy: --refiner and --rounds apply to --method bc")
    for key in ("profile", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    trainer = PPOTrainer(load_ppo_recipe(overrides), args.out, device=args.device)
    if args.resume:
        trainer.restore(args.out)
    try:
        result = trainer.train(progress=not args.json)
    except KeyboardInterrupt:
        print(f"stopped at {trainer.timesteps} timesteps; continue with --resume ({args.out})", file=sys.stderr)
        return 130
    print(json.dumps(result) if args.json else f"wrote {result['checkpoint']} after {result['timesteps']} timesteps")
    return 0


def _launch(args: argparse.Namespace) -> int:
    from sim2real_goggles.ros import launch_runner

    plan = launch_runner.load_launch(args.file, args.launch_arguments, show_args=args.show_args)
    if args.show_args:
        print(launch_runner.format_arguments(plan), end="")
        return 0
    if args.print_only:
        print(launch_runner.format_plan(plan), end="")
        return 0
    return launch_runner.run_plan(plan, sigterm_timeout=args.sigterm_timeout, sigkill_timeout=args.sigterm_timeout)


def _record(args: argparse.Namespace) -> int:
    from sim2real_goggles.ros.bag_record import record_main

    return record_main(args)


def _replay(args: argparse.Namespace) -> int:
    from sim2real_goggles.ros.bag_replay import replay_main

    return replay_main(args)


def _eval_bag(args: argparse.Namespace) -> int:
    from sim2real_goggles.evaluation.bag_eval import eval_bag_main

    return eval_bag_main(args)


_COMMANDS = {
    "demo": _demo,
    "collect": _collect,
    "eval-policy": _eval_policy,
    "bench": _bench,
    "train-segmenter": _train_segmenter,
    "train-translator": _train_translator,
    "train-policy": _train_policy,
    "ensemble-policy": _ensemble_policy,
    "transfer-table": _transfer_table,
    "seg-table": _seg_table,
    "eval-translator": _eval_translator,
    "export": _export,
    "translate": _translate,
    "pretrained": _pretrained,
    "profiles": _profiles,
    "launch": _launch,
    "record": _record,
    "replay": _replay,
    "eval-bag": _eval_bag,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
