"""The README and docs/ say what the code does: quoted code occurs where they say, links resolve, every curated
experiment, config key, conf/ folder and figure is listed, and the commands and error lines shown are gradlab's."""

import ast
import itertools
import re
import shlex
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, REPO, compose_config
from gradlab.config import ConfigError, schema_keys
from gradlab.mlp import MLP
from gradlab.overrides import check_overrides, config_groups
from gradlab.validation import validate

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
TEACHING = REPO / "docs" / "teaching.md"
API = REPO / "docs" / "api.md"
MAX_README_LINES = 260
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
BACKTICKED = re.compile(r"`([^`]+)`")


def outside_code_blocks(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside ``` fences."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def section(path: Path, heading: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level (outside code blocks)."""
    lines = path.read_text().splitlines()
    start, level, fenced = lines.index(heading), heading.index(" "), False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", lines[i]):
            return "\n".join(lines[start + 1 : i])
    return "\n".join(lines[start + 1 :])


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lstrip("#").strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line) for line in outside_code_blocks(path.read_text()) if line.startswith("#")}


def relative_links() -> list[tuple[Path, str]]:
    return [(page, target) for page in [README, *DOCS, REPO / "runs" / "README.md"]
            for target in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", target)]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table in text, as lists of cells (no header, no separator)."""
    lines = [line.strip() for line in text.splitlines()]
    separator = [line.startswith("|") and set(line) <= set("|-: ") for line in lines]
    body = [line for i, line in enumerate(lines) if line.startswith("| ") and not separator[i]
            and not (i + 1 < len(lines) and separator[i + 1])]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in body]


def quoted_code() -> list[tuple[str, str, str]]:
    """(fragment, file, function) for every backticked fragment in teaching.md's table that names a .py file."""
    quotes = []
    for row in table_rows(TEACHING.read_text()):
        where = BACKTICKED.findall(row[-1])
        files = [w for w in where if w.endswith(".py")]
        if files:
            function = next(w for w in where if not w.endswith(".py"))
            quotes += [(fragment, files[0], function) for fragment in BACKTICKED.findall(row[1])]
    return quotes


def function_source(file: str, qualified_name: str) -> str:
    """The source of a function or method (Class.method) in a file of the repository."""
    source = (REPO / file).read_text()
    scope, *rest = qualified_name.split(".")
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == scope and not rest:
            return ast.get_source_segment(source, node)
        if isinstance(node, ast.ClassDef) and node.name == scope and rest:
            method = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == rest[0])
            return ast.get_source_segment(source, method)
    raise LookupError(f"no {qualified_name} in {file}")


@pytest.mark.parametrize(("fragment", "file", "function"), quoted_code())
def test_teaching_table_quotes_code_as_it_is_in_the_function_it_names(fragment: str, file: str, function: str):
    assert fragment in function_source(file, function)


def test_teaching_table_quotes_the_whole_forward_and_backward():
    functions = {function for _, _, function in quoted_code()}
    assert {"affine_forward", "affine_backward", "MLP.backprop", "MLP.input_backward", "gradients"} <= functions
    assert len(quoted_code()) >= 12


def test_teaching_network_is_the_tutorials_sigmoid_net_with_standard_normal_weights():
    (constructor,) = [block for block in code_blocks(TEACHING.read_text(), "python") if "MLP(" in block]
    net = eval(constructor, {"MLP": MLP, "n_in": 784, "n_hidden": 100, "n_out": 10})
    weights = torch.cat([w.flatten() for w in net.weights])
    assert (net.depth, net.activation_name) == (2, "sigmoid")
    assert abs(float(weights.mean())) < 0.02 and abs(float(weights.std()) - 1) < 0.02  # torch.randn: N(0, 1)


def test_api_example_runs_and_gives_one_gradient_per_parameter():
    namespace: dict = {}
    exec(code_blocks(API.read_text(), "python")[0], namespace)
    assert len(namespace["grads"]) == len(namespace["net"].parameters())


def test_api_protocol_example_gives_the_same_gradients_as_the_stateful_one():
    namespace: dict = {}
    first, protocol = code_blocks(API.read_text(), "python")[:2]
    exec(first, namespace)
    exec(protocol, namespace)
    for stateful, passed in zip(namespace["grads"], namespace["back"].grads, strict=True):
        assert torch.equal(stateful, passed)
    names = {name for layer, time, name, _ in namespace["rows"].per_replica()[0] if layer is not None}
    assert {"grad_norm", "delta_rms", "update_ratio", "act_std"} <= names


@pytest.mark.parametrize(("page", "target"), relative_links(), ids=lambda v: str(v).replace(str(REPO), ""))
def test_every_relative_link_points_to_an_existing_file_and_heading(page: Path, target: str):
    file, _, anchor = target.partition("#")
    linked = (page.parent / file).resolve() if file else page
    assert linked.exists(), f"{page.name}: {target} does not exist"
    if anchor:
        assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def test_readme_is_under_260_lines():
    assert len(README.read_text().splitlines()) < MAX_README_LINES


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_readme_lists_every_curated_experiment(experiment: str):
    readme = README.read_text()  # the command alone, or followed by its report's options
    assert f"+experiment={experiment}`" in readme or f"+experiment={experiment} && python analysis/report.py" in readme


def user_keys() -> list[str]:
    """The keys a user sets: every leaf of the schema, and each config group (dataset=toy)."""
    keys, groups = schema_keys(), config_groups(CONF)
    return [key for key in keys if key in groups or not any(k.startswith(f"{key}.") for k in keys)]


@pytest.mark.parametrize("key", user_keys())
def test_readme_config_table_names_every_key_a_user_sets(key: str):
    assert f"`{key}`" in section(README, "### Config keys")


def default_of(key: str) -> object:
    """A key's default in the composed config; a config group's is its option's name, a data set's option is the
    default of the data set that has it (toy's), since the default data set leaves it null."""
    config = compose_config()
    key = f"{key}.name" if key in config_groups(CONF) else key
    if OmegaConf.select(config, key) is None and key.startswith("dataset."):
        config = compose_config("dataset=toy")
    return OmegaConf.select(config, key)


def same_default(shown: str, value: object) -> bool:
    """A default as the README shows it (null, true, 1e-8, sgd) against the config's value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(shown) == value
    return shown == {None: "null", True: "true", False: "false"}.get(value, value)


def test_readme_config_table_defaults_are_the_configs_defaults():
    for row in table_rows(section(README, "### Config keys")):
        keys, shown = BACKTICKED.findall(row[0]), row[1].split(", ")
        for key, default in zip(keys, shown, strict=True):
            assert same_default(default, default_of(key)), f"{key}: README {default}, config {default_of(key)}"


def test_readme_layout_names_every_conf_folder():
    layout = section(README, "## Layout")
    folders = [p.relative_to(CONF).as_posix() for p in CONF.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))]
    assert folders and all(f"{folder}/" in layout for folder in folders), folders


def test_readme_lists_every_figure_the_report_draws():
    from analysis.catalog import FIGURES

    report = section(README, "## The report")
    assert [spec.name for spec in FIGURES if f"`{spec.name}`" not in report] == []


def readme_commands(heading: str) -> list[list[str]]:
    """The arguments of each `python src/run.py` line in the first bash block under a heading, comments cut."""
    block = code_blocks(section(README, heading), "bash")[0]
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("python src/run.py")]
    return [[arg for arg in line[2:] if arg != "-m"] for line in lines]


@pytest.mark.parametrize("args", readme_commands("## Running"), ids=" ".join)
def test_every_command_under_running_is_a_valid_config(args: list[str]):
    """Each job of the command (every combination of its swept values) passes gradlab's checks."""
    own = [arg for arg in args if not arg.startswith("hydra.")]  # Hydra's own keys: Hydra checks them
    check_overrides(args, config_groups(CONF))
    choices = [[f"{arg.split('=')[0]}={v}" for v in arg.split("=", 1)[1].split(",")] for arg in own]
    for job in itertools.product(*choices):
        validate(compose_config(*job))


def readme_error_lines() -> list[tuple[list[str], str]]:
    """(arguments, the line printed) for each `$ python src/run.py ...` in the README's console blocks."""
    pairs = []
    for block in code_blocks(README.read_text(), "console"):
        lines = block.splitlines()
        pairs += [(shlex.split(line)[3:], lines[i + 1].removeprefix("gradlab: "))
                  for i, line in enumerate(lines) if line.startswith("$ python src/run.py")]
    return pairs


@pytest.mark.parametrize(("args", "printed"), readme_error_lines(), ids=lambda v: str(v)[:40])
def test_readme_error_lines_are_what_the_config_checks_say(args: list[str], printed: str):
    with pytest.raises(ConfigError) as error:
        check_overrides(args, config_groups(CONF))
        validate(compose_config(*args))
    assert str(error.value) == printed


def test_readme_shows_at_least_three_error_lines():
    assert len(readme_error_lines()) >= 3


def test_api_rnn_example_gives_one_gradient_per_parameter_and_a_state_gradient_per_step():
    namespace: dict = {}
    for block in code_blocks(API.read_text(), "python")[:3]:
        exec(block, namespace)
    rnn, back = namespace["rnn"], namespace["back"]
    assert [g.shape for g in back.grads] == [p.shape for p in rnn.parameters()]
    assert back.dh.shape == (8, 64, 32) and rnn.W.shape == (32, 128)  # an LSTM: four gates of 32
