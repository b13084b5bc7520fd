"""``python -m sim2real_goggles.training`` = ``goggles train-translator``, for torchrun:

torchrun --nproc_per_node 2 -m sim2real_goggles.training --method cyclegan --out runs/cg.pt
"""

import sys

from sim2real_goggles.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-translator", *sys.argv[1:]]))
