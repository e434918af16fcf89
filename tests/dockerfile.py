"""Reading Dockerfiles and .dockerignore the way Docker does, for the image checks in test_dockerfiles.py."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------
# A small Dockerfile parser: instructions (continuations joined, comments dropped) grouped into stages.
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading `--flag=value` options (COPY --from, RUN --mount, HEALTHCHECK --interval) and the rest."""
        flags: dict[str, str] = {}
        rest = self.args
        while m := re.match(r"--([\w-]+)(?:=(\S*))?\s*", rest):
            flags.setdefault(m.group(1), m.group(2) or "")
            rest = rest[m.end() :]
        return flags, rest

    def words(self) -> list[str]:
        """Exec (JSON) form or shell-ish words of the part after the flags."""
        _, rest = self.flags_and_rest()
        if rest.startswith("["):
            return json.loads(rest)
        return shlex.split(rest)


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None


def parse_instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continuation (Docker drops those too)
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        cmd, _, args = " ".join(p for p in parts if p).partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return out


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for ins in parse_instructions(path.read_text()):
        if ins.cmd == "FROM":
            _, rest = ins.flags_and_rest()
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), f"{path}:{ins.line}: cannot read FROM {ins.args!r}"
            stages.append(Stage(len(stages), words[0], name))
        else:
            assert stages or ins.cmd == "ARG", f"{path}:{ins.line}: {ins.cmd} before the first FROM"
            if stages:
                stages[-1].instructions.append(ins)
    return stages


def stage_by_ref(stages: list[Stage], ref: str, before: int) -> Stage | None:
    for stage in stages[:before]:
        if stage.name == ref or str(stage.index) == ref:
            return stage
    return None


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest") and "$" not in image


def context_copies(stage: Stage) -> list[tuple[Instruction, list[str], str]]:
    """COPY/ADD from the build context: (instruction, sources, destination)."""
    out = []
    for ins in stage.instructions:
        if ins.cmd in ("COPY", "ADD") and "from" not in ins.flags_and_rest()[0]:
            words = ins.words()
            assert len(words) >= 2, f"line {ins.line}: {ins.cmd} needs a source and a destination"
            out.append((ins, words[:-1], words[-1]))
    return out


# ----------------------------------------------------------------------------------------------------------
# .dockerignore, matched like Docker does: patterns relative to the context root, `**` spans directories,
# a path is excluded when it or one of its parents matches, the last matching rule wins, `!` re-includes.
# ----------------------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out, i = out + "(?:.*/)?", i + 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and (end := pattern.find("]", i + 1)) != -1:
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end + 1
            continue
        elif c == "\\" and i + 1 < len(pattern):
            out, i = out + re.escape(pattern[i + 1]), i + 2
            continue
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    path = ROOT / ".dockerignore"
    rules = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def expand_source(source: str) -> list[Path]:
    """A COPY source relative to the context root, wildcards expanded."""
    return [Path(p) for p in sorted(glob.glob(str(ROOT / source.lstrip("/")), recursive=False))]
