"""Bad input for every `l2d-jax` subcommand: one line on stderr, exit status 2, nothing written.

Each case runs the command as a user would (`cli.main`) on a malformed, truncated,
foreign or damaged input and checks that stderr holds a single line
`l2d-jax COMMAND: error: ...` naming the file or field, and that no output file
appeared. Exports, agent stores and feature caches are then damaged byte by
byte: none of them is used, and every error names the damaged file.
"""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from l2d_jax import cli
from l2d_jax.agents import store as store_lib
from l2d_jax.data import feature_cache, features, squad, wordpiece
from l2d_jax.data.example import Answer, Example
from l2d_jax.data.tokenizer import load_tokenizer
from l2d_jax.export import bundle, loader
from l2d_jax.models import hf_import
from l2d_jax.rejector import text
from l2d_jax.rejector.model import Rejector

AGENTS = ("main", "big", "human")
META = bundle.AgentsMeta(fees_J=(0.1, 1.0, 3.0), alpha_J=(1.0, 1.0, 1.0), loss="1-f1")
WORDS = "the cat sat on a mat where did who ran to park red blue green dog".split()


def _cli(capsys, *argv) -> tuple[int, str, str]:
  """Runs `l2d-jax ARGV...`; returns (exit status, stdout, stderr)."""
  status = cli.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def _assert_one_line_error(result: tuple[int, str, str], command: str, *named: object) -> str:
  """Exit status 2 and a single stderr line `l2d-jax COMMAND: error: ...` naming `named`."""
  status, _, err = result
  lines = err.strip().splitlines()
  assert status == 2 and len(lines) == 1, err
  assert lines[0].startswith(f"l2d-jax {command}: error: "), err
  for name in named:
    assert str(name) in lines[0], (name, err)
  return lines[0]


def _corruptions(raw: bytes, foreign: bytes) -> list[tuple[str, bytes]]:
  """Damaged versions of a file's bytes: single-bit and whole-byte flips spread over it,
  cut to half, emptied, and replaced by another file's bytes."""
  damaged = []
  for k, position in enumerate(np.linspace(0, len(raw) - 1, 6).astype(int)):
    mask = (0x01, 0x80, 0xFF)[k % 3]
    flipped = bytearray(raw)
    flipped[position] ^= mask
    damaged.append((f"byte {position} ^ {mask:#04x}", bytes(flipped)))
  return damaged + [("cut to half", raw[:len(raw) // 2]), ("emptied", b""),
                    ("foreign", foreign)]


def _write_questions(path: pathlib.Path) -> pathlib.Path:
  contexts = ["the cat sat on a mat", "a red dog ran to the park", "who sat on the green mat"]
  examples = [Example(f"q{i}", "t", context, f"where did the {context.split()[1]} go?",
                      (Answer(context.split()[-1], len(context) - len(context.split()[-1])),))
              for i, context in enumerate(contexts)]
  squad.write_squad(path, examples, "1.1")
  return path


def _tiny_rejector(vocab_size: int, nan_logits: bool = False) -> Rejector:
  """A 1-layer BERT text rejector with random weights (NaN classifier weights if asked)."""
  model = nnx.eval_shape(lambda: text.text_rejector(
      "scratch", len(AGENTS), vocab_size=vocab_size, num_layers=1, hidden_size=16, num_heads=2,
      intermediate_size=32, max_seq_len=32))
  rng = np.random.default_rng(0)

  def fill(path, x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.key(0)
    value = rng.normal(0, 0.2, x.shape).astype(x.dtype)
    return np.full_like(value, np.nan) if nan_logits and "classifier" in str(path) else value

  nnx.update(model, jax.tree_util.tree_map_with_path(fill, nnx.state(model)))
  model.eval()
  return model


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> dict:
  """A tiny rejector export (CPU only), one whose router gives NaN logits, and questions."""
  root = tmp_path_factory.mktemp("bad_input_export")
  tokenizer = load_tokenizer(wordpiece.save_tokenizer(
      wordpiece.train_wordpiece([" ".join(WORDS)], vocab_size=140), root / "tokenizer"))
  dirs = {}
  for name, nan_logits in (("good", False), ("nan", True)):
    dirs[name] = bundle.export_rejector(
        _tiny_rejector(len(tokenizer), nan_logits), tokenizer, root / name, agent_names=AGENTS,
        agents_meta=META, max_seq_len=32, max_query_len=8, platforms=("cpu",))
  return dict(dirs, questions=_write_questions(root / "questions.json"))


def test_route_works_on_the_intact_export(export, tmp_path, capsys):
  out = tmp_path / "routes.json"
  status, _, err = _cli(capsys, "route", "--export", export["good"], "--data",
                        export["questions"], "--out", out)
  assert (status, err) == (0, "")  # no library banner or warning either
  assert set(json.loads(out.read_text())) == {"q0", "q1", "q2"}


_WITHOUT_TORCH = ("import sys; sys.modules['torch'] = None  # as if PyTorch were not installed\n"
                  "from l2d_jax import cli; sys.exit(cli.main(sys.argv[1:]))")


def test_route_without_torch_prints_no_library_banner(tmp_path):
  """transformers' "PyTorch was not found" advice is kept off stderr, unless --verbose.

  (`route` imports transformers first thing; an absent export then ends it quickly.)
  """
  argv = ["route", "--export", tmp_path / "absent", "--data", tmp_path / "questions.json"]
  # Without the settings an earlier `cli.main` in this process left in the environment.
  env = {k: v for k, v in os.environ.items()
         if k not in ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "TRANSFORMERS_VERBOSITY")}
  quiet, verbose = (subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *map(str, argv), *extra],
                                   capture_output=True, text=True, timeout=300, cwd=tmp_path,
                                   env=env)
                    for extra in ([], ["--verbose"]))
  _assert_one_line_error((quiet.returncode, "", quiet.stderr), "route", "No such file")
  assert verbose.returncode == 2 and "PyTorch was not found" in verbose.stderr


def test_route_refuses_nan_logits(export, tmp_path, capsys):
  out = tmp_path / "routes.json"
  result = _cli(capsys, "route", "--export", export["nan"], "--data", export["questions"],
                "--out", out)
  _assert_one_line_error(result, "route", "router.stablehlo gave NaN or infinite logits")
  assert not out.exists()


def test_every_damaged_export_file_is_named_and_nothing_routes(export, tmp_path, capsys):
  """Byte flips, truncation, emptying and foreign bytes, in every file of the export."""
  damaged_dir = tmp_path / "export"
  shutil.copytree(export["good"], damaged_dir)
  names = sorted(p.name for p in damaged_dir.iterdir())
  out = tmp_path / "routes.json"
  total = 0  # damaged files tried: every corruption of every file
  for k, name in enumerate(names):
    path = damaged_dir / name
    raw = path.read_bytes()
    foreign = (damaged_dir / names[(k + 1) % len(names)]).read_bytes()
    for label, damaged in _corruptions(raw, foreign):
      path.write_bytes(damaged)
      total += 1
      result = _cli(capsys, "route", "--export", damaged_dir, "--data", export["questions"],
                    "--out", out)
      line = _assert_one_line_error(result, "route")
      assert name in line, (name, label, line)
      assert not out.exists(), (name, label)
    path.write_bytes(raw)
  assert total == 9 * len(names)
  assert len(names) >= 9  # every file of the export, its manifest included
  assert _cli(capsys, "route", "--export", damaged_dir, "--data", export["questions"],
              "--out", out)[0] == 0  # restored: routes again


def test_half_written_or_foreign_export_directories(export, tmp_path, capsys):
  out = tmp_path / "routes.json"
  unfinished = tmp_path / "unfinished"
  shutil.copytree(export["good"], unfinished)
  (unfinished / loader.MANIFEST_FILE).unlink()  # as a killed export leaves it
  for directory, named in ((unfinished, "has no export_manifest.json"),
                           (tmp_path / "absent", "is not a directory"),
                           (export["questions"], "is not a directory")):
    result = _cli(capsys, "route", "--export", directory, "--data", export["questions"],
                  "--out", out)
    _assert_one_line_error(result, "route", directory, named)
  assert not out.exists()


_STANDALONE = textwrap.dedent("""
    import sys
    import numpy as np
    good, damaged = sys.argv[1:]
    sys.path.insert(0, good)
    from load_router import ExportError, Router, verify_export
    router = Router(good)
    ids = np.zeros((2, router.max_seq_len), np.int32)
    logits, agent = router(input_ids=ids, attention_mask=ids + 1, token_type_ids=ids)
    assert logits.shape == (2, 3) and np.isfinite(logits).all()
    for check in (Router, verify_export):
      try:
        check(damaged)
        raise SystemExit("a damaged export was used")
      except ExportError as err:
        print(err)
    assert not any(m.split(".")[0] in ("l2d_jax", "flax") for m in sys.modules)
""")


def test_the_shipped_loader_refuses_a_damaged_export_without_l2d_jax(export, tmp_path):
  damaged_dir = tmp_path / "export"
  shutil.copytree(export["good"], damaged_dir)
  blob = damaged_dir / loader.ROUTER_FILE
  raw = bytearray(blob.read_bytes())
  raw[len(raw) // 3] ^= 0x04
  blob.write_bytes(bytes(raw))
  # -I: no PYTHONPATH, user site or current directory on sys.path; -B: no __pycache__.
  result = subprocess.run([sys.executable, "-I", "-B", "-c", _STANDALONE, str(export["good"]),
                           str(damaged_dir)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == [
      f"{blob}: SHA-256 differs from the one export_manifest.json records (damaged or "
      f"replaced)"] * 2


def test_loading_a_damaged_export_as_a_checkpoint_names_the_file(export, tmp_path):
  hf_import.load_pretrained(export["good"], task="classify")  # intact: loads
  damaged_dir = tmp_path / "export"
  shutil.copytree(export["good"], damaged_dir)
  weights = damaged_dir / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[:-8])
  with pytest.raises(hf_import.CheckpointError, match=r"model\.safetensors: \d+ bytes, "
                                                      r"export_manifest\.json records"):
    hf_import.load_pretrained(damaged_dir, task="classify")


@pytest.mark.parametrize("content, named", [
    (None, "No such file or directory"),
    (b'{"data": [', "malformed JSON"),
    (b"", "malformed JSON"),
    (b'{"data": [{"title": "t", "paragraphs": 3}]}', "paragraphs"),
    (b"[1, 2]", "expected a JSON object at the top"),
    (b'{"version": "1.1", "data": [{"title": "caf\xe9"}]}', "not UTF-8"),
])
def test_route_and_score_name_a_bad_data_file(export, tmp_path, capsys, content, named):
  data = tmp_path / "questions.json"
  if content is not None:
    data.write_bytes(content)
  out = tmp_path / "out.json"
  for command, argv in (("route", ["--export", export["good"], "--out", out]),
                        ("score", ["--human-annotator", 0, "--out-file", out])):
    result = _cli(capsys, command, "--data", data, *argv)
    _assert_one_line_error(result, command, data, named)
    assert not out.exists()


@pytest.mark.parametrize("predictions, named", [
    (b'{"q0": "mat", ', "malformed JSON"),
    (b'["mat"]', "expected a JSON object of question id"),
    (b'{"q0": 3}', "question id 'q0'"),
    (b'{"q0": "m\xe4t"}', "not UTF-8"),
])
def test_score_names_a_bad_predictions_file(export, tmp_path, capsys, predictions, named):
  path = tmp_path / "predictions.json"
  path.write_bytes(predictions)
  out = tmp_path / "scores.json"
  result = _cli(capsys, "score", "--data", export["questions"], "--predictions", path,
                "--out-file", out)
  _assert_one_line_error(result, "score", named)
  assert not out.exists()


def test_score_and_route_name_bad_options(export, tmp_path, capsys):
  out = tmp_path / "out.json"
  result = _cli(capsys, "score", "--data", export["questions"], "--human-annotator", 5,
                "--out-file", out)
  _assert_one_line_error(result, "score", "no question has more than 5 annotations",
                         export["questions"])
  result = _cli(capsys, "route", "--export", export["good"], "--data", export["questions"],
                "--out", out, "--batch-size", 0)
  _assert_one_line_error(result, "route", "--batch-size must be positive")
  assert not out.exists()


def test_verbose_adds_the_traceback(tmp_path, capsys):
  status, _, err = _cli(capsys, "score", "--data", tmp_path / "absent.json",
                        "--human-annotator", 0, "--verbose")
  assert status == 2 and "Traceback (most recent call last)" in err
  assert err.strip().splitlines()[-1].startswith("l2d-jax score: error: ")


# The experiment commands, on a config of two human agents over synthetic data (no training).
_TINY_CONFIG = textwrap.dedent("""
    from l2d_jax import config as C

    def get_config():
      return C.ExperimentConfig(
          name="tiny", workdir="runs/tiny",
          data=C.DataConfig(source="synthetic", synthetic_articles=6, synthetic_annotators=3),
          agents=(C.AgentConfig(name="ann0", kind="human", annotator=0, fee="1.0"),
                  C.AgentConfig(name="ann1", kind="human", annotator=1, fee="2.0")),
          eval=C.EvalConfig(rejector_fee="0"))
""")


@pytest.fixture
def tiny_config(tmp_path) -> pathlib.Path:
  path = tmp_path / "tiny.py"
  path.write_text(_TINY_CONFIG)
  return path


@pytest.mark.parametrize("command", ["run", "prepare", "precompute", "train", "evaluate",
                                     "export", "sweep"])
def test_experiment_commands_name_an_unknown_config(tmp_path, capsys, command):
  result = _cli(capsys, command, "--config", "no_such_experiment", "--workdir", tmp_path / "w")
  _assert_one_line_error(result, command, "no experiment 'no_such_experiment'")
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("source, named", [
    ("def get_config(:\n", "tiny.py:1: "),
    ("CONFIG = 1\n", "defines no get_config()"),
    ("def get_config():\n  return {}\n", "returned a dict, not an ExperimentConfig"),
])
def test_a_broken_config_file_is_named(tmp_path, capsys, source, named):
  path = tmp_path / "tiny.py"
  path.write_text(source)
  result = _cli(capsys, "prepare", "--config", path, "--workdir", tmp_path / "w")
  _assert_one_line_error(result, "prepare", path, named)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("assignment, named", [
    ("train.stepz=1", "train.stepz: TrainConfig has no field 'stepz'"),
    ("trian.steps=1", "trian.steps: ExperimentConfig has no field 'trian'"),
    ("train.steps=abc", "train.steps='abc': not a Python literal"),
    ("train.steps=1.5", "train.steps='1.5': expected int, got float"),
    ("agents.7.fee=1", "agents.7.fee: '7' is not an index below 2"),
    ("train.steps", "--set expects key=value, got 'train.steps'"),
])
def test_bad_set_overrides_are_one_line(tiny_config, tmp_path, capsys, assignment, named):
  result = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", tmp_path / "w",
                "--set", assignment)
  _assert_one_line_error(result, "precompute", named)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("assignment, named", [
    ("agents.1.kind=robot", "agent 'ann1': unknown kind 'robot'"),
    ("agents.1.fee=cheap", "agent 'ann1': fee must be one of ('flops', 'latency') or a number, "
                           "got 'cheap'"),
])
def test_bad_agent_settings_are_one_line(tiny_config, tmp_path, capsys, assignment, named):
  result = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", tmp_path / "w",
                "--set", assignment)
  _assert_one_line_error(result, "precompute", named)


def test_pools_the_later_stages_cannot_use_are_refused_before_anything_runs(
    tiny_config, tmp_path, capsys):
  result = _cli(capsys, "run", "--config", tiny_config, "--workdir", tmp_path / "w")
  _assert_one_line_error(result, "run", "agents.0 ('ann0', kind 'human') is the main model and "
                         "must be a model agent")
  assert not (tmp_path / "w").exists()
  result = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", tmp_path / "w",
                "--set", "costs.alpha=(1.0,)")
  _assert_one_line_error(result, "precompute", "costs.alpha has 1 values for 2 agents")
  result = _cli(capsys, "train", "--config", tiny_config, "--workdir", tmp_path / "w")
  _assert_one_line_error(result, "train", "set rejector.tokenizer or rejector.backbone")


@pytest.mark.parametrize("assignments, named", [
    (["train.ensemble=0"], "train.ensemble is the number of rejectors to train and average, "
                           "at least 1, got 0"),
    (["train.ensemble=2", "rejector.frozen_encoder=True"],
     "train.ensemble > 1 needs trained sources"),
])
def test_an_ensemble_that_cannot_train_is_refused_before_anything_runs(
    tiny_config, tmp_path, capsys, assignments, named):
  settings = [arg for assignment in assignments for arg in ("--set", assignment)]
  result = _cli(capsys, "train", "--config", tiny_config, "--workdir", tmp_path / "w", *settings)
  _assert_one_line_error(result, "train", named)
  assert not (tmp_path / "w").exists()


def test_data_errors_and_missing_checkpoints_in_experiment_commands(tiny_config, tmp_path,
                                                                     capsys):
  bad = tmp_path / "bad.json"
  bad.write_text('{"version": "1.1", "data": [}')
  splits = tmp_path / "splits.json"
  squad_data = ["--set", "data.source=squad_json", "--set", f"data.path={bad}",
                "--set", f"data.splits={splits}"]
  splits.write_text('{"expert_train": ["a"], "rejector_train": ["b"], "test": ["c"]}')
  result = _cli(capsys, "prepare", "--config", tiny_config, "--workdir", tmp_path / "w",
                *squad_data)
  _assert_one_line_error(result, "prepare", splits, "no splits for data file 'bad.json'")
  splits.write_text('{"bad.json": {"expert_train": ["a"], "rejector_train": ["b"], '
                    '"test": ["c"]}}')
  result = _cli(capsys, "prepare", "--config", tiny_config, "--workdir", tmp_path / "w",
                *squad_data)
  _assert_one_line_error(result, "prepare", bad, "malformed JSON")
  model_agent = ["--set", "agents.0.kind=model", "--set", "agents.0.model=scratch",
                 "--set", "agents.0.num_layers=1", "--set", "agents.0.scratch_hidden=16",
                 "--set", "agents.0.scratch_intermediate=32"]
  missing = tmp_path / "no_such_run" / "checkpoints"
  result = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", tmp_path / "w",
                *model_agent, "--set", f"agents.0.init_from={missing}")
  _assert_one_line_error(result, "precompute", missing, "no finished checkpoint")
  result = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", tmp_path / "w",
                *model_agent, "--set", f"agents.0.model={tmp_path / 'no_such_model'}")
  _assert_one_line_error(result, "precompute", tmp_path / "no_such_model")


def test_a_store_made_from_other_data_is_one_line(tiny_config, tmp_path, capsys):
  workdir = tmp_path / "w"
  status, _, _ = _cli(capsys, "precompute", "--config", tiny_config, "--workdir", workdir)
  assert status == 0
  manifest = workdir / "store" / "ann0" / "manifest.json"
  record = json.loads(manifest.read_text())
  writer = store_lib.AgentWriter(
      tmp_path / "other", "ann0", kind="human", num_examples=record["num_examples"],
      fingerprints=store_lib.Fingerprints("other data"), chunk_examples=record["chunk_examples"])
  for c in range(writer.num_chunks):
    rows = writer.chunk_rows(c)
    n = rows.stop - rows.start
    writer.write_chunk(c, texts=[""] * n,
                       examples={k: np.zeros(n) for k in store_lib.EXAMPLE_FIELDS})
  writer.finish()
  shutil.rmtree(workdir / "store" / "ann0")
  shutil.copytree(tmp_path / "other" / "ann0", workdir / "store" / "ann0")
  result = _cli(capsys, "train", "--config", tiny_config, "--workdir", workdir,
                "--set", f"rejector.tokenizer={workdir / 'data' / 'tokenizer'}")
  _assert_one_line_error(result, "train", manifest, "agent 'ann0' was computed on other data")
  assert not (workdir / "rejector").exists()


# Byte-by-byte damage to the agent store and the feature cache.


def _write_store(store_dir: pathlib.Path) -> None:
  """One agent of 10 questions in 3 chunks, with logits."""
  rng = np.random.default_rng(0)
  writer = store_lib.AgentWriter(store_dir, "a", kind="model",
                                 fingerprints=store_lib.Fingerprints("d", "t", "m"),
                                 num_examples=10, chunk_examples=4)
  for c in range(writer.num_chunks):
    rows = writer.chunk_rows(c)
    n = rows.stop - rows.start
    writer.write_chunk(
        c, texts=[f"answer {i}" for i in range(rows.start, rows.stop)],
        examples={k: rng.random(n) for k in store_lib.EXAMPLE_FIELDS},
        start_end_logits_Fx2xL=rng.normal(size=(n, 2, 8)), window_example_F=np.arange(n),
        gold_Fx2=np.zeros((n, 2)))
  writer.finish()


def _read_whole_store(store_dir: pathlib.Path) -> None:
  store = store_lib.AgentStore(store_dir, ["a"], data_fingerprint="d")
  for field in store_lib.EXAMPLE_FIELDS:
    store.example_table(field)
  store.answers("a")
  for c in range(3):
    store.logits("a", c)


def test_every_damaged_store_file_is_named_and_not_read(tmp_path):
  _write_store(tmp_path)
  _read_whole_store(tmp_path)  # intact: reads
  files = sorted((tmp_path / "a").iterdir())
  assert [p.name for p in files] == ["chunk-00000.json", "chunk-00000.npz", "chunk-00001.json",
                                     "chunk-00001.npz", "chunk-00002.json", "chunk-00002.npz",
                                     "manifest.json"]
  total = 0  # damaged files tried: every corruption of every file
  for k, path in enumerate(files):
    raw = path.read_bytes()
    for label, damaged in _corruptions(raw, files[(k + 1) % len(files)].read_bytes()):
      path.write_bytes(damaged)
      total += 1
      with pytest.raises(store_lib.StoreMismatchError) as error:
        _read_whole_store(tmp_path)
      assert str(path) in str(error.value), (path.name, label, error.value)
      assert len(str(error.value).splitlines()) == 1
    path.write_bytes(raw)
  assert total == 9 * len(files)
  _read_whole_store(tmp_path)  # restored: reads again


def test_every_damaged_feature_cache_file_is_named_and_rebuilt(tmp_path, caplog):
  examples = [Example(f"q{i}", "t", " ".join(WORDS[i:] + WORDS[:i]), "where did the cat sit?",
                      (Answer(WORDS[i], 0),)) for i in range(6)]
  tokenizer = load_tokenizer(wordpiece.save_tokenizer(
      wordpiece.train_wordpiece([" ".join(WORDS)], vocab_size=140), tmp_path / "tokenizer"))
  params = features.FeatureParams(16, 4, 8)
  fresh = feature_cache.cached_features(examples, tokenizer, params, tmp_path / "cache")
  entry, = (tmp_path / "cache").iterdir()
  files = sorted(entry.iterdir())
  assert len(files) == 9  # 8 arrays and the manifest
  total = 0  # damaged files tried: every corruption of every file
  for k, path in enumerate(files):
    raw = path.read_bytes()
    for label, damaged in _corruptions(raw, files[(k + 1) % len(files)].read_bytes()):
      path.write_bytes(damaged)
      total += 1
      caplog.clear()
      with caplog.at_level(logging.WARNING, logger="l2d_jax.data.feature_cache"):
        rebuilt = feature_cache.cached_features(examples, tokenizer, params, tmp_path / "cache")
      warnings = [r.getMessage() for r in caplog.records]
      assert len(warnings) == 1 and "is unusable" in warnings[0], (path.name, label, warnings)
      assert path.name in warnings[0], (path.name, label, warnings)
      for name in features.Features.ARRAY_FIELDS:  # what is returned is the fresh arrays
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(fresh, name))
      assert path.read_bytes() == raw  # the damaged entry was replaced by a rebuilt one
  assert total == 9 * len(files)
