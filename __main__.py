"""rancher-ha: a highly available Rancher management server on AWS.

Wiring only: read and validate the stack's settings once, build the stack, export.
"""

import pulumi

from app import deploy
from settings import load_settings

for name, value in deploy(load_settings()).items():
    pulumi.export(name, value)
