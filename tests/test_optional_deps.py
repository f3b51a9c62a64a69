"""Optional dependencies stay optional (pyproject.toml's extras `tfds` and `tensorboard`).

Each test runs `l2d-jax` in a subprocess where the extras' packages (and PyTorch, the
test suite's reference only) look uninstalled: `sys.modules[name] = None` makes
`import name` raise ModuleNotFoundError and `importlib.util.find_spec(name)` return
None, as when the package is absent. Every module but the TFDS reader imports, a tiny
experiment runs end to end, and a `tfds` source stops with one line naming the extra.
"""

import json
import pathlib
import subprocess
import sys

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
ABSENT = ("tensorflow_datasets", "array_record", "tensorboardX", "torch")
# `python -c` prelude: the packages above look uninstalled, then l2d-jax's command line.
_CLI_WITHOUT_EXTRAS = ("import sys\n"
                       f"for name in {ABSENT!r}:\n"
                       "  sys.modules[name] = None\n")


def _run(code: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", _CLI_WITHOUT_EXTRAS + code], cwd=cwd,
                        capture_output=True, text=True, timeout=600, check=False)


def _cli(argv: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
  return _run(f"from l2d_jax import cli\nsys.exit(cli.main({argv!r}))", cwd)


def _smoke_config(tmp_path: pathlib.Path) -> pathlib.Path:
  config = tmp_path / "smoke.py"
  config.write_text("import sys\nsys.path.insert(0, %r)\nfrom demo import smoke_config as "
                    "get_config\n" % str(EXPERIMENTS))
  return config


def test_every_module_but_the_tfds_reader_imports_without_the_extras(tmp_path):
  done = _run("import importlib, pkgutil\n"
              "import l2d_jax\n"
              "for module in pkgutil.walk_packages(l2d_jax.__path__, 'l2d_jax.'):\n"
              "  if module.name != 'l2d_jax.data.tfds_source':\n"
              "    importlib.import_module(module.name)\n"
              "print(sorted(name for name in " f"{ABSENT!r}" " if sys.modules[name] is not None))\n",
              tmp_path)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "[]"


def test_a_tfds_source_without_tensorflow_datasets_is_one_line_naming_the_extra(tmp_path):
  done = _cli(["prepare", "--config", str(_smoke_config(tmp_path)), "--workdir",
               str(tmp_path / "w"), "--set", "data.source=tfds",
               "--set", "data.tfds_name=squad/v1.1"], tmp_path)
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr
  assert lines[0].startswith("l2d-jax prepare: error: data.source=tfds needs")
  assert lines[0].endswith("pip install 'l2d-jax[tfds]'")


def test_run_end_to_end_without_the_extras_says_once_that_tensorboard_is_off(tmp_path):
  workdir = tmp_path / "w"
  done = _cli(["run", "--config", str(_smoke_config(tmp_path)), "--workdir", str(workdir)],
              tmp_path)
  assert done.returncode == 0, done.stderr
  outputs = json.loads(done.stdout[done.stdout.index("{"):])
  assert pathlib.Path(outputs["report_json"]).exists()
  assert (pathlib.Path(outputs["export"]) / "router.stablehlo").exists()
  assert done.stderr.count("TensorBoard event files are off") == 1, done.stderr
  assert "pip install 'l2d-jax[tensorboard]'" in done.stderr
  metrics = list(workdir.rglob("metrics.jsonl"))
  assert metrics and all(path.read_text() for path in metrics)
  assert not list(workdir.rglob("tensorboard"))
