"""Run under torchrun by tests/test_distributed.py: a few tiny CycleGAN iterations per rank,
then each rank writes its weights and losses so the test can compare the ranks."""

import sys
from pathlib import Path

import torch

from sim2real_goggles.training.translator import TranslatorConfig, TranslatorTrainer

out = Path(sys.argv[1])
cfg = TranslatorConfig(
    method="cyclegan",
    image_size=32,
    frames=16,
    ngf=4,
    n_blocks=1,
    ndf=8,
    batch_size=2,
    pool_size=4,
    iterations=3,
    checkpoint_every=1000,
    sample_every=1000,
)
trainer = TranslatorTrainer(cfg, out / "cg.pt")
initial = {k: v.clone() for k, v in trainer.G_rs.state_dict().items()}
trainer.train(progress=False)
torch.save(
    {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "initial": initial,
        "G_rs": trainer.G_rs.state_dict(),
        "D_sim": trainer.D_sim.state_dict(),
        "losses": [h["cycle_real"] for h in trainer.history],
    },
    out / f"rank{trainer.rank}.pt",
)
