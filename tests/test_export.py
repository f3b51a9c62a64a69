"""Rejector export: PyTorch parity of the HF directory, the StableHLO router without l2d_jax, route."""

import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from l2d_jax import cli
from l2d_jax.data import squad, wordpiece
from l2d_jax.data.example import Answer, Example
from l2d_jax.data.tokenizer import load_tokenizer
from l2d_jax.defer import budget
from l2d_jax.export import bundle, loader, route, stablehlo
from l2d_jax.train import mesh as mesh_lib
from l2d_jax.rejector import text
from l2d_jax.train.rejector import rejector_inputs

AGENTS = ("main", "big", "human")
MAX_SEQ_LEN = 32
MAX_QUERY_LEN = 8
META = bundle.AgentsMeta(fees_J=(0.1, 1.0, 3.0), alpha_J=(1.0, 1.0, 1.0), loss="1-f1",
                         beta_scale=0.5, flops_J=(2e6, 2e7, None), router_fee=0.02,
                         router_flops=5e5)

_WORDS = ("cat dog bird fish the a on in sat ran flew swam mat tree sky lake red blue green "
          "small big old what who where did which").split()


def _examples(count: int, seed: int = 0) -> list[Example]:
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(count):
    context = " ".join(rng.choice(_WORDS, size=rng.integers(8, 40)))
    question = " ".join(rng.choice(_WORDS, size=rng.integers(2, 12))) + "?"
    answer = context.split()[0]
    examples.append(Example(f"q{i}", f"article{i // 5}", context, question,
                            (Answer(answer, 0),)))
  return examples


def _random_rejector(vocab_size: int, seed: int):
  """A tiny BERT rejector with random weights whose logits differ by O(1) between questions.

  Built abstractly and filled from NumPy (the eager initializers would compile
  every small op, which costs more than the rest of this file), with weights
  large enough that 1e-4 parity and different routes mean something.
  """
  model = nnx.eval_shape(lambda: text.text_rejector(
      "scratch", len(AGENTS), vocab_size=vocab_size, num_layers=2, hidden_size=32, num_heads=4,
      intermediate_size=64, max_seq_len=MAX_SEQ_LEN, seed=seed))
  rng = np.random.default_rng(seed)

  def fill(path, x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.key(seed)
    if not jax.dtypes.issubdtype(x.dtype, np.floating):
      return np.zeros(x.shape, x.dtype)
    name = path[-2].key
    noise = rng.standard_normal(x.shape)
    if name == "scale":  # LayerNorm
      return (1 + 0.1 * noise).astype(x.dtype)
    if name == "bias":
      return (0.02 * noise).astype(x.dtype)
    fan_in = 1 if name == "embedding" else x.shape[0]
    return (noise / np.sqrt(fan_in)).astype(x.dtype)

  nnx.update(model, jax.tree_util.tree_map_with_path(fill, nnx.state(model)))
  return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny WordPiece tokenizer, a random BERT rejector (replicated on 8 devices) and its export."""
  root = tmp_path_factory.mktemp("export")
  examples = _examples(23)
  tokenizer = load_tokenizer(wordpiece.save_tokenizer(
      wordpiece.train_wordpiece([" ".join(_WORDS)], vocab_size=120), root / "tokenizer"))
  model = _random_rejector(vocab_size=len(tokenizer), seed=4)  # routes to two agents
  nnx.update(model, mesh_lib.replicate(mesh_lib.make_mesh(), nnx.state(model)))  # as trained
  model.eval()
  out = bundle.export_rejector(model, tokenizer, root / "out", agent_names=AGENTS,
                               agents_meta=META, max_seq_len=MAX_SEQ_LEN,
                               max_query_len=MAX_QUERY_LEN)
  inputs = rejector_inputs(examples, tokenizer, MAX_SEQ_LEN, max_query_len=MAX_QUERY_LEN)
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, inputs: nnx.merge(graphdef, state)(inputs))
  logits_ExJ = np.asarray(forward(state, inputs))
  return dict(root=root, out=out, examples=examples, tokenizer=tokenizer, model=model,
              inputs=inputs, logits_ExJ=logits_ExJ)


def test_export_directory_holds_every_file(setup):
  files = sorted(p.name for p in setup["out"].iterdir())
  assert files == ["agents.json", "config.json", "export_manifest.json", "load_router.py",
                   "model.safetensors", "router.json", "router.stablehlo", "tokenizer.json",
                   "tokenizer_config.json"]
  manifest = json.loads((setup["out"] / "export_manifest.json").read_text())
  assert manifest["format_version"] == loader.FORMAT_VERSION
  assert sorted(manifest["files"]) == [f for f in files if f != "export_manifest.json"]
  config_json = (setup["out"] / "config.json").read_bytes()
  assert manifest["files"]["config.json"] == {"bytes": len(config_json),
                                              "sha256": hashlib.sha256(config_json).hexdigest()}
  names, meta = bundle.read_agents(setup["out"])
  assert names == list(AGENTS) and meta == META
  record = json.loads((setup["out"] / "agents.json").read_text())
  assert [a["beta"] for a in record["agents"]] == [0.05, 0.5, 1.5]
  router_meta = json.loads((setup["out"] / "router.json").read_text())
  assert router_meta["max_seq_len"] == MAX_SEQ_LEN and router_meta["agent_names"] == list(AGENTS)
  assert router_meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_hf_export_loads_in_pytorch_with_the_same_logits(setup, torch):
  import transformers  # pylint: disable=import-outside-toplevel
  model, info = transformers.BertForSequenceClassification.from_pretrained(
      str(setup["out"]), output_loading_info=True)
  assert {k: v for k, v in info.items() if v} == {}  # no missing, unexpected or mismatched keys
  assert model.config.id2label == dict(enumerate(AGENTS))
  assert model.config.num_labels == 3
  model.eval()
  with torch.inference_mode():
    got = model(**{k: torch.from_numpy(v.astype(np.int64))
                   for k, v in setup["inputs"].items()}).logits.numpy()
  assert np.abs(setup["logits_ExJ"]).max() > 0.5  # not a near-zero comparison
  np.testing.assert_allclose(got, setup["logits_ExJ"], atol=1e-4)
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(setup["out"]))
  question = setup["examples"][0].question
  assert hf_tokenizer(question)["input_ids"] == setup["tokenizer"](question)["input_ids"]


def test_router_has_a_symbolic_batch_and_a_fixed_length(setup):
  exported = jax.export.deserialize(bytearray((setup["out"] / "router.stablehlo").read_bytes()))
  assert exported.platforms == stablehlo.PLATFORMS
  assert [str(a.shape) for a in exported.in_avals] == [f"(b, {MAX_SEQ_LEN})"] * 3
  assert [str(a) for a in exported.out_avals] == ["float32[b,3]", "int32[b]"]
  router = loader.Router(setup["out"])
  short = {k: v[:, :16] for k, v in setup["inputs"].items()}
  with pytest.raises(ValueError, match=r"input 'input_ids' must be \[batch, 32\]"):
    router(**short)
  with pytest.raises(ValueError, match="takes exactly the inputs"):
    router(input_ids=setup["inputs"]["input_ids"])
  holes = dict(setup["inputs"], attention_mask=setup["inputs"]["attention_mask"].copy())
  holes["attention_mask"][0, :2] = 0  # padding before tokens: the encoder reads lengths
  with pytest.raises(ValueError, match="tokens first, then padding"):
    router(**holes)


_CLEAN_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    export_dir, inputs_path, out_path = sys.argv[1:]
    sys.path.insert(0, export_dir)
    from load_router import Router
    router = Router(export_dir)
    outputs = {}
    with np.load(inputs_path) as z:
      for size in (1, 7):
        logits, agent = router(**{k: z[k][:size] for k in z.files})
        outputs[f"logits{size}"], outputs[f"agent{size}"] = logits, agent
    assert not any(m.split(".")[0] in ("l2d_jax", "flax") for m in sys.modules), sorted(sys.modules)
    np.savez(out_path, **outputs)
""")


def test_stablehlo_router_runs_without_l2d_jax(setup, tmp_path):
  np.savez(tmp_path / "inputs.npz", **setup["inputs"])
  # -I: no PYTHONPATH, no user site, no current directory on sys.path; -B: no __pycache__.
  result = subprocess.run([sys.executable, "-I", "-B", "-c", _CLEAN_SCRIPT, str(setup["out"]),
                           str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  with np.load(tmp_path / "out.npz") as got:
    for size in (1, 7):
      want = setup["logits_ExJ"][:size]
      np.testing.assert_allclose(got[f"logits{size}"], want, atol=1e-5)
      np.testing.assert_array_equal(got[f"agent{size}"], want.argmax(axis=1))


def test_route_cli_end_to_end(setup, tmp_path, capsys):
  data = tmp_path / "questions.json"
  squad.write_squad(data, setup["examples"], "1.1")
  out = tmp_path / "routes.json"
  # Batch 8 over 23 questions: the last call is padded.
  assert cli.main(["route", "--export", str(setup["out"]), "--data", str(data),
                   "--out", str(out), "--batch-size", "8"]) == 0
  routes = json.loads(out.read_text())
  expected = [AGENTS[j] for j in setup["logits_ExJ"].argmax(axis=1)]
  assert routes == {e.id: name for e, name in zip(setup["examples"], expected)}
  assert len(set(expected)) > 1  # the check is not vacuous
  printed = capsys.readouterr().out
  for name in AGENTS:
    count = expected.count(name)
    assert f"{count:>9}  {count / len(expected):>6.1%}" in printed
  # in the report's fee units (those of --budget fee=F), not scaled by beta_scale
  mean_fee = sum(META.fees_J[AGENTS.index(n)] for n in expected) / len(expected)
  assert f"mean fee per question of the agents answering: {mean_fee:.4g}" in printed
  assert (f"router's own fee per question: {META.router_fee:.4g}; "
          f"{mean_fee + META.router_fee:.4g} in all") in printed


def test_agents_record_without_a_router_reads_as_a_free_router():
  record = META.to_json(AGENTS)
  assert record["router"] == {"fee": 0.02, "beta": 0.01, "flops": 5e5, "reads": []}
  del record["router"]
  names, meta = bundle.AgentsMeta.from_json(record)
  assert names == list(AGENTS) and (meta.router_fee, meta.router_flops) == (0.0, None)
  assert meta.fees_J == META.fees_J


def test_route_rejects_a_tokenizer_that_is_not_the_exported_one(setup, tmp_path, capsys):
  broken = tmp_path / "broken"
  broken.mkdir()
  for path in setup["out"].iterdir():
    (broken / path.name).write_bytes(path.read_bytes())
  other = wordpiece.train_wordpiece(["entirely different words here"], vocab_size=120)
  wordpiece.save_tokenizer(other, broken)
  bundle.write_manifest(broken)  # a consistent export, but of another tokenizer
  data = tmp_path / "questions.json"
  squad.write_squad(data, setup["examples"][:3], "1.1")
  assert cli.main(["route", "--export", str(broken), "--data", str(data),
                   "--out", str(tmp_path / "r.json")]) == 2
  assert "is not the one the router was exported with" in capsys.readouterr().err


def test_route_with_a_budget_meets_it_on_the_exported_calibration(setup, tmp_path, capsys):
  export = tmp_path / "export"
  export.mkdir()
  for path in setup["out"].iterdir():
    (export / path.name).write_bytes(path.read_bytes())
  data = tmp_path / "questions.json"
  squad.write_squad(data, setup["examples"], "1.1")
  assert cli.main(["route", "--export", str(export), "--data", str(data),
                   "--budget", "fee=1"]) == 2  # exported without a calibration
  assert f"{export} has no calibration.json" in capsys.readouterr().err
  # The router's own logits on the routed questions serve as the calibration, so the routes
  # must realise the held-out figures exactly.
  logits_ExJ = route.router_logits(loader.Router(export), setup["inputs"], batch_size=8)
  calibration = budget.Calibration(AGENTS, logits_ExJ, META.fees_J, META.router_fee,
                                   source="the 23 routed questions")
  (export / bundle.CALIBRATION_FILE).write_text(json.dumps(calibration.to_json()))
  bundle.write_manifest(export)
  out = tmp_path / "routes.json"
  own = np.argmax(logits_ExJ, axis=1)
  for spec, realised in (("fee=1.5", "fee"), ("share:human<=0.2", "share")):
    point = budget.operating_point(spec, calibration)
    assert cli.main(["route", "--export", str(export), "--data", str(data), "--out", str(out),
                     "--batch-size", "8", "--budget", spec]) == 0
    alloc_E = point.route(logits_ExJ)
    assert json.loads(out.read_text()) == {e.id: AGENTS[j]
                                           for e, j in zip(setup["examples"], alloc_E)}
    assert (alloc_E != own).any()  # the budget moved the rejector's choice
    held = point.fee if realised == "fee" else point.shares_J[2]
    assert (held <= 1.5) if realised == "fee" else (held <= 0.2)
    printed = capsys.readouterr().out
    assert f"budget {spec} (" in printed
    assert (f"met on the 23 routed questions: {held:.4f} ± {point.standard_error:.4f}; "
            f"here {held:.4f} on 23 questions") in printed
  # Held out on 8 of them, the budget is met on those 8; on the batch, on all 23 (exactly).
  held_out = dataclasses.replace(calibration, logits_ExJ=logits_ExJ[:8], source="8 held out")
  (export / bundle.CALIBRATION_FILE).write_text(json.dumps(held_out.to_json()))
  bundle.write_manifest(export)
  routed = {}
  for budget_on, calibrated in (("held-out", held_out), ("batch", calibration)):
    point = budget.operating_point("fee=1.5", calibrated)
    assert cli.main(["route", "--export", str(export), "--data", str(data), "--out", str(out),
                     "--batch-size", "8", "--budget", "fee=1.5", "--budget-on", budget_on]) == 0
    alloc_E = point.route(logits_ExJ)
    assert json.loads(out.read_text()) == {e.id: AGENTS[j]
                                           for e, j in zip(setup["examples"], alloc_E)}
    printed = capsys.readouterr().out
    here = float(np.mean(np.asarray(META.fees_J)[alloc_E]) + META.router_fee)
    source = "8 held out" if budget_on == "held-out" else f"the 23 questions of {data}"
    assert f"met on {source}: {point.fee:.4f}" in printed and f"here {here:.4f} on 23" in printed
    if budget_on == "batch":  # its standard error clustered by the questions' articles
      assert point.fee == pytest.approx(here)
      by_article = budget.operating_point("fee=1.5", dataclasses.replace(
          calibration, groups_E=[e.title for e in setup["examples"]]))
      assert by_article.standard_error != point.standard_error
      assert f"{point.fee:.4f} ± {by_article.standard_error:.4f}; here" in printed
    routed[budget_on] = json.loads(out.read_text())
  assert routed["held-out"] != routed["batch"]
  # Met on a single article's questions, the budget has no standard error, and says so.
  first = [e for e in setup["examples"] if e.title == setup["examples"][0].title]
  one_article = tmp_path / "one_article.json"
  squad.write_squad(one_article, first, "1.1")
  assert cli.main(["route", "--export", str(export), "--data", str(one_article), "--out",
                   str(out), "--budget", "fee=1.5", "--budget-on", "batch"]) == 0
  assert "(one article or question: no standard error); here" in capsys.readouterr().out
  assert cli.main(["route", "--export", str(export), "--data", str(data),
                   "--budget-on", "batch"]) == 2
  assert "--budget-on batch needs a --budget to meet" in capsys.readouterr().err
  empty = tmp_path / "empty.json"
  squad.write_squad(empty, [], "1.1")
  assert cli.main(["route", "--export", str(export), "--data", str(empty),
                   "--budget", "fee=1.5", "--budget-on", "batch"]) == 2
  assert f"{empty}: no questions to meet --budget fee=1.5 on" in capsys.readouterr().err
  assert cli.main(["route", "--export", str(export), "--data", str(data),
                   "--budget", "fee=9"]) == 2
  assert "budget 'fee=9' is out of reach: this router's mean fee per question lies in [0.12, " \
         "3.02]" in capsys.readouterr().err


def test_route_names_a_missing_router(tmp_path, capsys):
  data = tmp_path / "questions.json"
  squad.write_squad(data, _examples(2), "1.1")
  assert cli.main(["route", "--export", str(tmp_path), "--data", str(data)]) == 2
  assert f"{tmp_path} has no export_manifest.json" in capsys.readouterr().err


def test_export_checks_agent_names_and_costs(setup, tmp_path):
  with pytest.raises(ValueError, match="2 agent names for a rejector with 3 outputs"):
    bundle.export_rejector(setup["model"], setup["tokenizer"], tmp_path, agent_names=AGENTS[:2],
                           agents_meta=META, max_seq_len=MAX_SEQ_LEN)
  with pytest.raises(ValueError, match="agent names must be distinct"):
    bundle.export_rejector(setup["model"], setup["tokenizer"], tmp_path,
                           agent_names=("a", "a", "b"), agents_meta=META, max_seq_len=MAX_SEQ_LEN)
  with pytest.raises(ValueError, match="one entry per agent"):
    bundle.AgentsMeta(fees_J=(0.1, 1.0), alpha_J=(1.0,), loss="1-f1")
  with pytest.raises(ValueError, match="'0-f1'"):
    bundle.AgentsMeta(fees_J=(0.1,), alpha_J=(1.0,), loss="0-f1")
  assert not any(tmp_path.iterdir())  # nothing written for a bad request
