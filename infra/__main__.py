"""`pulumi up` entry point: the stack's platform spec (stacks/Pulumi.<stack>.yaml) drives everything."""

import pulumi

from eolake_infra.program import build
from eolake_spec import load_stack

build(load_stack(pulumi.get_stack()), source=f"stacks/Pulumi.{pulumi.get_stack()}.yaml")
