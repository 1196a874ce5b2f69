"""The source holds its lines: math imports only torch and the stdlib, and src/ never uses autograd.

Every module of the package is math unless IO_MODULES names it, so a new module is held to the rules by default.

Each rule is a small function over source text, tested on a bad snippet as well as on src/, so a rule
that stopped catching anything would fail here instead of passing in silence.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gradlab"
# The modules that read or write files, the network or the process, or use Hydra, W&B, pandas: the rest is math.
IO_MODULES = {
    "config",  # the config schema, in Hydra's ConfigStore
    "data",  # data sets from disk or the network
    "experiment",  # one job: the record, W&B, the progress bar
    "overrides",  # the command line, through Hydra's parser
    "record",  # the run folder's files
    "result_lines",  # Hydra's callback: a job's line on stderr
    "sweeps",  # a sweep's state file and folders
    "sync",  # W&B uploads, credentials
    "tracking",  # the W&B helper process
    "validation",  # the config's semantic checks (omegaconf)
    "wandb_helper",  # the W&B helper process itself
}
# The exceptions, named here so that no other slips in. product_svd: LAPACK's preconditioned Jacobi SVD (xGEJSV),
# accurate to relative round-off for graded matrices, which torch does not offer; product_svd reaches it through scipy
# (numpy arrays in, numpy arrays out) for the exact Jacobian spectra. __init__: the package's names load on first use
# (importlib.import_module), so that importing gradlab.tracking costs no torch.
EXCEPTIONS = {"product_svd": {"numpy", "scipy"}, "__init__": {"importlib"}}
ALLOWED_IMPORTS = {
    "torch",
    "gradlab",
    "math",
    "collections",
    "typing",
    "dataclasses",
    "copy",
    "functools",
    "itertools",
    "numbers",
    "__future__",
}
FORBIDDEN_CALLS = {"open", "print", "__import__", "input"}
AUTOGRAD_NAMES = {
    "requires_grad",
    "requires_grad_",
    "autograd",
    "retain_grad",
    "retains_grad",
    "grad_fn",
    "enable_grad",
    "set_grad_enabled",
}
# Tensor.backward's own keywords: MLP.backward(dlogits) takes none of them.
TENSOR_BACKWARD_KEYWORDS = {"gradient", "retain_graph", "create_graph", "inputs"}
GLOBAL_SEEDING = {
    "torch.manual_seed",
    "torch.seed",
    "torch.random.manual_seed",
    "torch.random.seed",
    "torch.cuda.manual_seed",
    "torch.cuda.manual_seed_all",
}
RANDOM_DRAWS = {"rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson",
                "rand_like", "randn_like", "randint_like"}  # fmt: skip
IN_PLACE_DRAWS = {"uniform_", "normal_", "bernoulli_", "exponential_", "geometric_", "cauchy_", "log_normal_",
                  "random_"}  # fmt: skip


def math_module_paths() -> list[Path]:
    """Every module of the package but the I/O ones."""
    return [path for path in sorted(PACKAGE.rglob("*.py")) if module_name(path) not in IO_MODULES]


def module_name(path: Path) -> str:
    """'theory_depth' for gradlab/theory_depth.py; dotted below the package's top: 'sub.mod'."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def library_paths() -> list[Path]:
    """The package, less the entry points (src/run.py, src/sync.py), which own the process."""
    return sorted(PACKAGE.rglob("*.py"))


def all_source_paths() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def dotted(node: ast.AST) -> str:
    """'torch.nn.functional' for that chain of attributes on a name; '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module imported; relative imports count as gradlab."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add("gradlab" if node.level else node.module.split(".")[0])
    return modules


def disallowed_imports(source: str) -> set[str]:
    return imported_modules(source) - ALLOWED_IMPORTS


def forbidden_calls(source: str) -> list[str]:
    """Calls of the builtins open/print/__import__/input, by line."""
    return [
        f"{node.lineno}: {node.func.id}()"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS
    ]


def autograd_uses(source: str) -> list[str]:
    """Names, attributes, keywords and imports that reach autograd, and Tensor.backward-style calls."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
            if dotted(node) == "torch.func":
                found.append(f"{node.lineno}: torch.func")
        elif isinstance(node, ast.keyword) and node.arg:
            names = [node.arg]
        elif isinstance(node, ast.Import):
            names = [part for alias in node.names for part in alias.name.split(".")]
            if any(alias.name.startswith("torch.func") for alias in node.names):
                found.append(f"{node.lineno}: torch.func import")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            imported = [alias.name for alias in node.names]
            names = [*module.split("."), *imported]
            if module.startswith("torch.func") or (module == "torch" and "func" in imported):
                found.append(f"{node.lineno}: torch.func import")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "backward":
            if not node.args and not node.keywords:
                found.append(f"{node.lineno}: .backward() with no dlogits")
            keywords = {k.arg for k in node.keywords} & TENSOR_BACKWARD_KEYWORDS
            found += [f"{node.lineno}: .backward({k}=...)" for k in sorted(keywords)]
        found += [f"{node.lineno}: {name}" for name in names if name in AUTOGRAD_NAMES]
    return found


def global_seeding(source: str) -> list[str]:
    """Calls that seed torch's global RNG, and imports of manual_seed from torch."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and dotted(node.func) in GLOBAL_SEEDING:
            found.append(f"{node.lineno}: {dotted(node.func)}()")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
            seeding = [alias.name for alias in node.names if alias.name in {"manual_seed", "seed"}]
            found += [f"{node.lineno}: import {name}" for name in seeding]
    return found


def draws_without_generator(source: str) -> list[str]:
    """torch.randn(...)-style draws and in-place t.uniform_(...)-style fills that do not pass generator=."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = dotted(node.func) or node.func.attr
        is_draw = name in {f"torch.{draw}" for draw in RANDOM_DRAWS} or node.func.attr in IN_PLACE_DRAWS
        if is_draw and not any(k.arg == "generator" for k in node.keywords):
            found.append(f"{node.lineno}: {name}()")
    return found


def process_exits(source: str) -> list[str]:
    """sys.exit, exit, quit and os._exit calls, and imports of exit from sys."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and (dotted(node.func) in {"sys.exit", "os._exit", "exit", "quit"}):
            found.append(f"{node.lineno}: {dotted(node.func)}()")
        if isinstance(node, ast.ImportFrom) and node.module == "sys":
            found += [f"{node.lineno}: import exit" for alias in node.names if alias.name == "exit"]
    return sorted(found, key=lambda line: int(line.split(":")[0]))


def relative(path: Path) -> str:
    return str(path.relative_to(SRC))


# The rules themselves: each must catch a bad snippet and pass a good one.


def test_import_rule_catches_disallowed_imports():
    bad = "import os\nimport numpy as np\nfrom pandas import DataFrame\nimport logging.handlers\n"
    assert disallowed_imports(bad) == {"os", "numpy", "pandas", "logging"}
    good = "import math\nimport torch.nn.functional as F\nfrom collections.abc import Callable\n"
    good += "from . import mlp\nfrom __future__ import annotations\n"
    assert disallowed_imports(good) == set()


def test_call_rule_catches_open_and_print():
    bad = "def f(x):\n    print(x)\n    with open('a.txt', 'w') as fh:\n        fh.write(x)\n"
    assert forbidden_calls(bad) == ["2: print()", "3: open()"]
    assert forbidden_calls("def f(x):\n    return x.printable  # print(x)\n") == []


@pytest.mark.parametrize(
    "snippet",
    [
        "x = torch.zeros(3, requires_grad=True)",
        "w.requires_grad_()",
        "g = torch.autograd.grad(y, x)",
        "from torch import autograd",
        "import torch.autograd",
        "z.retain_grad()",
        "assert y.grad_fn is not None",
        "from torch.func import vjp",
        "from torch import func",
        "jac = torch.func.jacrev(f)(x)",
        "loss.backward()",
        "logits.sum().backward()",
        "loss.backward(retain_graph=True)",
        "out.backward(gradient=torch.ones_like(out))",
        "with torch.enable_grad():\n    pass",
    ],
)
def test_autograd_rule_catches_autograd_use(snippet):
    assert autograd_uses(snippet)


def test_autograd_rule_allows_manual_backprop():
    good = (
        "# no autograd here: requires_grad stays off\n"
        "'''grad_fn is never built'''\n"
        "grads = net.backward(loss.value_and_grad(logits, y)[1] / len(y))\n"
        "dz = dh * activation.grad(z)\n"
    )
    assert autograd_uses(good) == []


def test_seeding_rule_catches_global_seeding():
    assert global_seeding("torch.manual_seed(0)") == ["1: torch.manual_seed()"]
    assert global_seeding("torch.cuda.manual_seed_all(0)")
    assert global_seeding("from torch import manual_seed")
    assert global_seeding("gen = torch.Generator().manual_seed(seed)") == []


def test_draw_rule_catches_draws_from_the_global_rng():
    bad = "a = torch.randn(3)\nb = torch.randperm(5)\nw.uniform_(-1, 1)\nc = torch.randn_like(a)\n"
    expected = ["1: torch.randn()", "2: torch.randperm()", "3: w.uniform_()", "4: torch.randn_like()"]
    assert draws_without_generator(bad) == expected
    good = "a = torch.randn(3, generator=gen)\nw.uniform_(-1, 1, generator=gen)\nq = torch.rand_like\n"
    assert draws_without_generator(good) == []


def test_exit_rule_catches_process_exits():
    bad = "import sys\nsys.exit(2)\nos._exit(1)\nexit()\nfrom sys import exit\n"
    assert process_exits(bad) == ["2: sys.exit()", "3: os._exit()", "4: exit()", "5: import exit"]
    assert process_exits("raise ConfigError('depth=0')\ncode = process.exitcode\n") == []


# The rules applied to the source.


def test_every_io_module_and_exception_exists():
    modules = {module_name(path) for path in PACKAGE.rglob("*.py")}
    missing = sorted((IO_MODULES | set(EXCEPTIONS)) - modules)
    assert not missing, f"modules moved or renamed; update IO_MODULES or EXCEPTIONS: {missing}"


def test_the_core_of_the_package_is_held_to_the_math_rules():
    math = {module_name(path) for path in math_module_paths()}
    assert {"activations", "inits", "losses", "mlp", "optim", "stats", "train", "__init__"} <= math


@pytest.mark.parametrize("path", math_module_paths(), ids=relative)
def test_math_module_imports_only_torch_and_stdlib(path):
    assert disallowed_imports(path.read_text()) == EXCEPTIONS.get(module_name(path), set())


@pytest.mark.parametrize("path", math_module_paths(), ids=relative)
def test_math_module_does_no_io(path):
    assert forbidden_calls(path.read_text()) == []


@pytest.mark.parametrize("path", math_module_paths(), ids=relative)
def test_math_module_draws_random_numbers_from_an_explicit_generator(path):
    assert draws_without_generator(path.read_text()) == []


@pytest.mark.parametrize("path", all_source_paths(), ids=relative)
def test_source_never_uses_autograd(path):
    assert autograd_uses(path.read_text()) == []


@pytest.mark.parametrize("path", all_source_paths(), ids=relative)
def test_source_never_seeds_the_global_rng(path):
    assert global_seeding(path.read_text()) == []


@pytest.mark.parametrize("path", library_paths(), ids=relative)
def test_library_raises_and_never_exits_the_process(path):
    assert process_exits(path.read_text()) == []
