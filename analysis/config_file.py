"""A job's .hydra/config.yaml as a dict, fast: 10,000 jobs are read for one report.

Hydra writes a config as nested block mappings of plain scalars (`depth: 10`, `dataset:` then indented keys). Such a
file is read line by line, each scalar resolved by PyYAML itself (and remembered: a sweep repeats the same few
values), about 10x faster than libyaml parsing the whole file; anything else (lists, quotes, comments, flow
collections) is parsed by PyYAML, so the result is always what yaml.safe_load gives.
"""

import functools
import re

import yaml

LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_][\w.\-]*):(?: +(?P<value>[\w.+\-/]+))? *")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed: the same result, faster


@functools.cache
def scalar(text: str) -> object:
    """A plain scalar as PyYAML resolves it: 10 -> int, 1.0e-08 -> float, null -> None, yes -> True."""
    return yaml.load(text, Loader=LOADER)


def block_mapping(text: str) -> dict | None:
    """The file's nested mappings when every line is `key:` or `key: plain_scalar`; None for anything else."""
    root: dict = {}
    mappings = [(0, root)]  # the open mappings, innermost last, with the indent of their keys
    opened: tuple[dict, str] | None = None  # a `key:` whose value is the next, more indented, lines
    for line in text.splitlines():
        if not line.strip():
            continue
        match = LINE.fullmatch(line)
        if match is None:
            return None
        indent, key, value = len(match["indent"]), match["key"], match["value"]
        if opened is not None:
            parent, parent_key = opened
            if indent > mappings[-1][0]:
                parent[parent_key] = {}
                mappings.append((indent, parent[parent_key]))
            opened = None
        while mappings[-1][0] > indent:
            mappings.pop()
        keys_indent, mapping = mappings[-1]
        if keys_indent != indent or key in mapping or scalar(key) != key:  # yes: True, 1e3: 1000.0 as keys
            return None
        mapping[key] = None if value is None else scalar(value)
        if isinstance(mapping[key], dict | list):
            return None
        if value is None:
            opened = (mapping, key)
    return root or None  # an empty file is None to PyYAML


def read_config_text(text: str) -> object:
    """What yaml.safe_load(text) returns, by the fast path where the file allows it."""
    fast = block_mapping(text)
    return fast if fast is not None else yaml.load(text, Loader=LOADER)
