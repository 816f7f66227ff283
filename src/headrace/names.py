"""Human-friendly run names such as ``brave-otter``: easier to say and grep than a UUID."""

from __future__ import annotations

import os
import random
import secrets
import socket

ADJECTIVES = (
    "amber", "bold", "brave", "bright", "brisk", "calm", "clever", "cosmic", "crimson",
    "daring", "eager", "fancy", "fearless", "gentle", "glowing", "golden", "happy", "hidden",
    "humble", "jolly", "keen", "lively", "lucky", "mellow", "mighty", "nimble", "noble",
    "patient", "polite", "proud", "quick", "quiet", "rapid", "rustic", "sandy", "shiny",
    "silent", "silver", "smart", "snowy", "steady", "stellar", "sunny", "swift", "tidy",
    "tranquil", "vivid", "warm", "wise", "witty", "zesty",
)  # fmt: skip
ANIMALS = (
    "badger", "beaver", "bison", "crane", "dolphin", "eagle", "falcon", "ferret", "finch",
    "fox", "gazelle", "gecko", "heron", "ibis", "jaguar", "kestrel", "koala", "lemur",
    "lynx", "marmot", "mink", "moose", "narwhal", "newt", "ocelot", "orca", "otter", "owl",
    "panda", "pelican", "puffin", "quail", "raven", "salmon", "seal", "sparrow", "stork",
    "swan", "tapir", "tiger", "toucan", "trout", "turtle", "vole", "walrus", "weasel",
    "whale", "wolf", "wombat", "yak", "zebra",
)  # fmt: skip

_random = random.SystemRandom()


def generate_run_name() -> str:
    """A random ``adjective-animal`` name; not unique, the run id is."""
    return f"{_random.choice(ADJECTIVES)}-{_random.choice(ANIMALS)}"


def default_runner_name() -> str:
    """A runner's name unless given: its host and process, and a random part, so that no two
    runners share one (the pid alone repeats across restarts and containers)."""
    return f"runner-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
