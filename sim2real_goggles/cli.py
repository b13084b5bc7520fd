"""The ``goggles`` command: one subcommand per job, each with an example in its --help."""

from __future__ import annotations

import argparse
import json
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

            Layout: OUT/<profile>/images/NNNNNN.png, OUT/<profile>/masks/NNNNNN.png (class ids:
            0 floor, 1 wall, 2 obstacle, 3 target, 255 ignore), OUT/manifest.json (profiles,
            episode seeds, per-frame poses and actions), OUT/preview.png with --preview."""
        ),
    )
    p.add_argument("--profile", default=None, help="look to record (name or YAML path; default sim)")
    p.add_argument("--paired", type=_csv, default=[], help="comma-separated looks rendered at the same poses")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
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
        epilog="Example:\n  goggles eval-policy --policy expert --profile sim --episodes 200 --seed 0 --json",
    )
    p.add_argument("--policy", required=True, help="expert | random")
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

    p = sub.add_parser(
        "train-segmenter",
        help="train the sim segmenter on rendered images + masks; report sem_miou per look",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles train-segmenter --domain sim --out runs/segmenter.pt

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
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "train-translator",
        help="train an unpaired real->sim translator (cyclegan, vr_goggles)",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Examples:
              goggles train-translator --method cyclegan --real real_lab --sim sim --out runs/cyclegan.pt
              goggles train-translator --method vr_goggles --segmenter runs/segmenter.pt --out runs/vr.pt
              goggles train-translator --method vr_goggles --segmenter runs/segmenter.pt --out runs/vr.pt --resume

            The recipe config/training/<method>.yaml sets the defaults; options given here
            override it. Ctrl-C saves a checkpoint; --resume continues it exactly. TensorBoard
            logs go to OUT.runs/."""
        ),
    )
    p.add_argument("--method", choices=["cyclegan", "vr_goggles"], required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint path (the real->sim generator + training state)")
    p.add_argument("--recipe", type=Path, default=None, help="YAML recipe (default: config/training/<method>.yaml)")
    p.add_argument("--real", default=None, help="real domain: profile name/path or image folder")
    p.add_argument("--sim", default=None, help="sim domain: profile name/path or image folder with masks/")
    p.add_argument("--segmenter", default=None, help="frozen sim segmenter checkpoint (vr_goggles)")
    p.add_argument("--arch", choices=["compact", "resnet9"], default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="image size")
    p.add_argument("--frames", type=int, default=None, help="images per domain")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--json", action="store_true", help="print JSON only")

    p = sub.add_parser(
        "eval-translator",
        help="translation quality on paired held-apart frames: sem_miou, PSNR/SSIM, fd_seg, shift_err",
        formatter_class=fmt,
        epilog=dedent(
            """\
            Example:
              goggles eval-translator runs/vr_goggles.pt --segmenter runs/segmenter.pt --real real_lab --sim sim --n 500 --json

            Also reports the segmenter on the untranslated real frames (sem_miou_no_goggles) and
            on true sim frames (sem_miou_sim, the upper bound), and writes a side-by-side grid:
            real | translated | sim through the real camera | predicted mask | true mask."""
        ),
    )
    p.add_argument("translator", type=Path, help="translator checkpoint")
    p.add_argument("--segmenter", type=Path, required=True, help="frozen sim segmenter checkpoint")
    p.add_argument("--real", default="real_lab", help="real-like look (profile name or path)")
    p.add_argument("--sim", default="sim")
    p.add_argument("--n", type=int, default=500, help="frames")
    p.add_argument("--seed", type=int, default=200_000, help="first evaluation room seed")
    p.add_argument("--size", type=int, default=None, help="image size (default: the translator's)")
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
        "profiles",
        help="list, show or check appearance profiles",
        formatter_class=fmt,
        epilog="Examples:\n  goggles profiles list\n  goggles profiles show real_lab\n  goggles profiles check my_camera.yaml",
    )
    p.add_argument("action", choices=["list", "show", "check"])
    p.add_argument("profiles", nargs="*", help="profile names or YAML paths (show/check)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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


def _eval_policy(args: argparse.Namespace) -> int:
    from sim2real_goggles.appearance.profile import load_profile
    from sim2real_goggles.evaluation.policy_eval import make_policy, run_episodes, summarize

    profile = load_profile(args.profile)
    policy = make_policy(args.policy)
    results = run_episodes(policy, args.profile, args.episodes, args.seed, image_size=args.size, progress=not args.json)
    summary = summarize(results, policy=args.policy, profile=profile.name, seed=args.seed, image_size=args.size)
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
    from sim2real_goggles.bench import bench_env

    result = bench_env(steps=args.steps, image_size=args.size, profile=args.profile, seed=args.seed)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    from sim2real_goggles.training.segmenter import SegmenterConfig, train_segmenter

    cfg = SegmenterConfig(
        domain=args.domain,
        image_size=args.size,
        frames=args.frames,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_looks=tuple(args.eval_looks),
        eval_frames=args.eval_frames,
    )
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
    from sim2real_goggles.resources import share_path
    from sim2real_goggles.training.translator import TranslatorTrainer, load_recipe

    recipe = args.recipe or share_path("config", "training", f"{args.method}.yaml")
    cfg = load_recipe(
        recipe,
        method=args.method,
        real=args.real,
        sim=args.sim,
        segmenter=args.segmenter,
        arch=args.arch,
        iterations=args.iterations,
        batch_size=args.batch_size,
        image_size=args.size,
        frames=args.frames,
        seed=args.seed,
    )
    trainer = TranslatorTrainer(cfg, args.out)
    if args.resume:
        trainer.restore(args.out)
    result = trainer.train(progress=not args.json)
    print(
        json.dumps(result)
        if args.json
        else f"wrote {result['checkpoint']} after {result['iterations']} iterations ({result['minutes']} min)"
    )
    return 0


def _eval_translator(args: argparse.Namespace) -> int:
    from sim2real_goggles.evaluation.translation_eval import evaluate_translator

    grid = args.grid or args.translator.with_suffix(f".{args.real}.grid.png")
    report = evaluate_translator(
        args.translator, args.segmenter, args.real, args.sim, args.n, args.seed, args.size, grid
    )
    report["grid"] = str(grid)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
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

    if args.action == "list":
        for name in list_profiles():
            print(f"{name}: {load_profile(name).description}")
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


_COMMANDS = {
    "demo": _demo,
    "collect": _collect,
    "eval-policy": _eval_policy,
    "bench": _bench,
    "train-segmenter": _train_segmenter,
    "train-translator": _train_translator,
    "eval-translator": _eval_translator,
    "export": _export,
    "profiles": _profiles,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
