"""Stack files: `stacks/Pulumi.<stack>.yaml`, the platform object under the `eolake:platform` key, read safely (size,
alias expansion) and validated; an invalid one raises SpecError naming the file, the line, the field and the reason."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from eolake_spec.platform import Platform

# The repository's stacks/ (the package is installed from the workspace, editable); EOLAKE_STACKS_DIR overrides.
STACKS_DIR = Path(os.environ.get("EOLAKE_STACKS_DIR", Path(__file__).resolve().parents[4] / "stacks"))
CONFIG_KEY = "eolake:platform"
MAX_STACK_BYTES = 1024 * 1024
MAX_STACK_NODES = 100_000  # after aliases are expanded


class SpecError(ValueError):
    """An invalid stack file: names the file, the line, the field and the reason."""

    def __init__(self, file: Path, problems: list[tuple[str, int | None, str]]):
        self.file, self.problems = file, problems
        lines = [f"{file}:{line or 1}: {field}: {reason}" for field, line, reason in problems]
        super().__init__("invalid platform spec\n" + "\n".join(lines))


def stack_file(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def load_stack(stack_or_file: str | Path, stacks_dir: Path = STACKS_DIR) -> Platform:
    """Load and validate a stack by name (`local`) or by file path."""
    path = Path(stack_or_file)
    if path.suffix not in (".yaml", ".yml"):
        path = stack_file(str(stack_or_file), stacks_dir)
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise SpecError(path, [("stack", None, f"no such stack file (known stacks: {', '.join(known) or 'none'})")])
    if path.stat().st_size > MAX_STACK_BYTES:
        raise SpecError(path, [("stack", None, f"larger than {MAX_STACK_BYTES} bytes: not a stack file")])
    text = path.read_text()
    try:
        node = yaml.compose(text)
        _check_expansion(path, node)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(path, [("yaml", mark.line + 1 if mark else None, str(exc).replace("\n", " "))]) from exc
    config = (document or {}).get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict) or CONFIG_KEY not in config:
        raise SpecError(path, [(f"config.{CONFIG_KEY}", None, "missing: the stack file must hold the platform here")])
    try:
        return Platform.model_validate(config[CONFIG_KEY])
    except ValidationError as exc:
        lines = _line_index(node)
        problems = []
        for error in exc.errors():
            loc = ("config", CONFIG_KEY, *error["loc"])
            problems.append((".".join(map(str, loc[2:])) or CONFIG_KEY, _nearest_line(lines, loc), error["msg"]))
        raise SpecError(path, problems) from exc


def _check_expansion(path: Path, root: yaml.Node | None) -> None:
    """Refuse YAML whose aliases loop back into themselves or expand past MAX_STACK_NODES ("billion laughs"):
    both would make everything that walks the document (validation, the line index) recurse or run forever."""
    stack: list[tuple[yaml.Node, bool]] = [(root, False)] if root is not None else []
    open_nodes: set[int] = set()
    visited = 0
    while stack:
        node, leaving = stack.pop()
        if leaving:
            open_nodes.discard(id(node))
            continue
        if id(node) in open_nodes:
            raise SpecError(
                path,
                [
                    (
                        "yaml",
                        node.start_mark.line + 1,
                        "an alias refers to a node that contains it (a recursive YAML structure)",
                    )
                ],
            )
        visited += 1
        if visited > MAX_STACK_NODES:
            raise SpecError(
                path,
                [
                    (
                        "yaml",
                        None,
                        f"the document expands to more than {MAX_STACK_NODES} nodes (aliases repeated over and over)",
                    )
                ],
            )
        children = (
            [v for pair in node.value for v in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if children:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)


def _line_index(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each YAML path (tuple of keys and indexes) to its 1-based line."""
    index: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            index[path] = key.start_mark.line + 1
            index.update(_line_index(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            index[(*prefix, i)] = value.start_mark.line + 1
            index.update(_line_index(value, (*prefix, i)))
    return index


def _nearest_line(index: dict[tuple, int], loc: tuple) -> int | None:
    for end in range(len(loc), 0, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:end])
        if key in index:
            return index[key]
    return None
