"""Test set-up: keep any ROS 2 traffic on this machine and on a domain of its own."""

from __future__ import annotations

import os
import random

# DDS discovery must not multicast on the external interface, and parallel runs must not
# cross-talk: every test process gets LOCALHOST discovery and its own domain id (0-101).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
os.environ.setdefault("OMP_NUM_THREADS", "1")
