"""Precompute: store EM/F1 agree with the official metric, resumes to the same store, any mesh."""

import json
import pathlib

import numpy as np
import pytest
from flax import nnx

from l2d_jax.agents import feature_file, pool
from l2d_jax.agents import precompute as pre
from l2d_jax.agents import store as store_lib
from l2d_jax.data import features as features_lib
from l2d_jax.data import squad, synthetic, wordpiece
from l2d_jax.data.example import DataError
from l2d_jax.data.tokenizer import load_tokenizer
from l2d_jax.metrics import squad as metric
from l2d_jax.models.config import EncoderConfig
from l2d_jax.models.heads import SpanModel
from l2d_jax.train import mesh as mesh_lib

FINGERPRINTS = store_lib.Fingerprints("data", "tok", "model")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("pre")
  paths = synthetic.write_dataset(synthetic.SyntheticConfig(n_articles=4, seed=3), root)
  data = json.loads(paths.data.read_text())
  tokenizer = load_tokenizer(wordpiece.build_tokenizer(data, root / "tok"))
  examples = squad.read_squad(paths.data).examples
  features = features_lib.make_features(
      examples, tokenizer, features_lib.FeatureParams(max_seq_len=64, doc_stride=16,
                                                      max_query_len=24))
  config = EncoderConfig(family="bert", vocab_size=len(tokenizer), hidden_size=32, num_layers=1,
                         num_heads=2, intermediate_size=64, max_position_embeddings=64)
  model = SpanModel(config, rngs=nnx.Rngs(0))
  return examples, features, model


def _run(store_dir, setup, num_devices, **settings):
  examples, features, model = setup
  settings = pre.PrecomputeSettings(batch_size=8, chunk_examples=7, progress=False, **settings)
  return pre.precompute_model_agent(store_dir, "agent", model, features, examples,
                                    fingerprints=FINGERPRINTS, settings=settings,
                                    mesh=mesh_lib.make_mesh(num_devices))


def test_store_scores_match_official_metric_on_written_predictions(tmp_path, setup):
  examples = setup[0]
  agent_dir = _run(tmp_path, setup, 8, logits_dtype="float32")
  store = store_lib.AgentStore(tmp_path, ["agent"])
  predictions = json.loads((agent_dir / "predictions.json").read_text())
  official = metric.score_v1(examples, predictions)
  assert store.example_table("em_E").mean() * 100 == pytest.approx(official["exact_match"])
  assert store.example_table("f1_E").mean() * 100 == pytest.approx(official["f1"])
  assert np.isfinite(store.example_table("span_nll_E")).all()
  assert (store.example_table("prob_E") <= 1).all()
  # the stored logits reproduce the stored answers
  logits, window_example, _ = store.logits("agent", 0)
  assert logits.shape[1:] == (2, 64) and window_example.max() < 7


def test_killed_precompute_resumes_to_the_same_store(tmp_path, setup):
  full = _run(tmp_path / "full", setup, 8)
  partial = _run(tmp_path / "partial", setup, 8)
  # simulate a kill after chunk 1: later chunks and the completion mark are gone
  manifest = json.loads((partial / "manifest.json").read_text())
  manifest["complete"] = False
  (partial / "manifest.json").write_text(json.dumps(manifest))
  for path in sorted(partial.glob("chunk-*"))[4:]:
    path.unlink()
  _run(tmp_path / "partial", setup, 8)
  for path in sorted(full.glob("chunk-*.npz")):
    a, b = np.load(path), np.load(partial / path.name)
    for key in a.files:
      np.testing.assert_array_equal(a[key], b[key])
  assert (full / "predictions.json").read_text() == (partial / "predictions.json").read_text()


def test_same_outputs_on_one_and_eight_devices(tmp_path, setup):
  one = store_lib.AgentStore(pathlib.Path(_run(tmp_path / "one", setup, 1)).parent, ["agent"])
  eight = store_lib.AgentStore(pathlib.Path(_run(tmp_path / "eight", setup, 8)).parent, ["agent"])
  assert one.answers("agent") == eight.answers("agent")
  np.testing.assert_allclose(one.example_table("span_nll_E"), eight.example_table("span_nll_E"),
                             rtol=1e-5)


def test_features_of_other_questions_are_refused(tmp_path, setup):
  examples, features, model = setup
  with pytest.raises(store_lib.StoreMismatchError, match="other questions"):
    pre.precompute_model_agent(tmp_path, "agent", model, features, examples[1:],
                               fingerprints=FINGERPRINTS, settings=pre.PrecomputeSettings())


def test_agent_features_are_stored_and_written_by_question_id(tmp_path, setup):
  examples, features, model = setup
  agent_dir = _run(tmp_path, setup, 8, logits_dtype="float32")
  store = store_lib.AgentStore(tmp_path, ["agent"])
  statistics, hidden = store.agent_features("agent")
  assert statistics.shape == (len(examples), len(store_lib.STATISTICS))
  column = dict(zip(store_lib.STATISTICS, statistics.T))
  # the answer statistics are read off the stored answers: each one's word count
  np.testing.assert_array_equal(column["answer_words_E"],
                                [len(text.split()) for text in store.answers("agent")])
  assert column["answer_words_E"].max() > 1  # the spans are not all one word: the test can fail
  # v1 answers are never empty, so the confidence stored for the cascade is the best span's
  np.testing.assert_allclose(column["best_prob_E"], store.example_table("prob_E")[:, 0], rtol=1e-6)
  np.testing.assert_array_equal(column["num_windows_E"], np.bincount(features.example_index_F))
  np.testing.assert_allclose(column["null_margin_E"], (store.example_table("null_score_E")
                                                       - store.example_table("score_E"))[:, 0])
  assert (column["top2_margin_E"] >= 0).all() and (column["top2_margin_E"] <= 1).all()
  # a one-window question's hidden state is its window's final states averaged over its tokens
  e = int(np.flatnonzero(column["num_windows_E"] == 1)[0])
  f = int(np.flatnonzero(features.example_index_F == e)[0])
  states = np.asarray(model.encoder(features.input_ids_FxL[f:f + 1],
                                    features.attention_mask_FxL[f:f + 1],
                                    features.token_type_ids_FxL[f:f + 1], deterministic=True))[0]
  tokens = features.attention_mask_FxL[f] > 0
  np.testing.assert_allclose(hidden[e], states[tokens].mean(0), rtol=1e-4, atol=1e-5)
  ids = [ex.id for ex in examples]
  from_file = feature_file.read(agent_dir / feature_file.FILE_NAME, ["agent"], ids[::-1])
  np.testing.assert_array_equal(from_file["agent"][0], statistics[::-1])
  np.testing.assert_array_equal(from_file["agent"][1], hidden[::-1])
  with pytest.raises(ValueError, match="no features of agent 'other'"):
    feature_file.read(agent_dir / feature_file.FILE_NAME, ["other"], ids)
  with pytest.raises(ValueError, match="1 questions have no features"):
    feature_file.read(agent_dir / feature_file.FILE_NAME, ["agent"], ids + ["nowhere"])
  # Files that are not a features archive are DataErrors naming the file, not tracebacks.
  not_npz, bare_array = tmp_path / "features.txt", tmp_path / "features.npy"
  not_npz.write_text("question,prob\n")
  np.save(bare_array, np.zeros(3))
  for path, reason in ((not_npz, "not an agent features file"), (bare_array, "an array, not")):
    with pytest.raises(DataError, match=reason) as caught:
      feature_file.read(path, ["agent"], ids)
    assert str(path) in str(caught.value)


def test_a_store_made_before_agent_features_is_recomputed(tmp_path, setup, caplog):
  agent_dir = _run(tmp_path, setup, 8)
  manifest = json.loads((agent_dir / "manifest.json").read_text())
  del manifest["fingerprints"]["recorded"]  # as an older precompute wrote it
  del manifest["files"], manifest["manifest_sha256"]
  (agent_dir / "manifest.json").write_text(json.dumps(manifest))
  for path in agent_dir.glob("chunk-*.npz"):  # and its chunks, without the features
    with np.load(path) as z:
      np.savez(path, **{k: z[k] for k in z.files if k != store_lib.HIDDEN_FIELD})
  with pytest.raises(store_lib.StoreMismatchError, match="before stores carried checksums"):
    store_lib.AgentStore(tmp_path, ["agent"])
  assert not pool._complete(tmp_path, "agent", pre.RECORDED)  # pylint: disable=protected-access
  _run(tmp_path, setup, 8)
  assert "recomputing agent 'agent'" in caplog.text
  assert pool._complete(tmp_path, "agent", pre.RECORDED)  # pylint: disable=protected-access
  assert store_lib.AgentStore(tmp_path, ["agent"]).agent_features("agent")[1].shape[1] == 32


def test_a_features_file_with_other_statistics_is_rewritten_from_the_store(tmp_path, setup):
  examples = setup[0]
  agent_dir = _run(tmp_path, setup, 8)
  path = agent_dir / feature_file.FILE_NAME
  current = path.read_bytes()
  pre.refresh_feature_file(tmp_path, "agent", examples)  # current: left as it is
  assert path.read_bytes() == current
  with np.load(path) as z:  # as a version before the answer statistics wrote it
    old = {k: z[k] for k in z.files}
  span = len(store_lib.SPAN_STATISTICS)
  old["agent/statistics"] = old["agent/statistics"][:, :span]
  old["agent/statistic_names"] = old["agent/statistic_names"][:span]
  np.savez(path, **old)
  ids = [e.id for e in examples]
  with pytest.raises(DataError, match="expected"):
    feature_file.read(path, ["agent"], ids)
  assert not feature_file.is_current(path, "agent")
  pre.refresh_feature_file(tmp_path, "agent", examples)
  assert feature_file.is_current(path, "agent")
  statistics, hidden = feature_file.read(path, ["agent"], ids)["agent"]
  stored = store_lib.AgentStore(tmp_path, ["agent"]).agent_features("agent")
  np.testing.assert_array_equal(statistics, stored[0])
  np.testing.assert_array_equal(hidden, stored[1])
