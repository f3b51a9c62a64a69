"""Agent store: round trip, resume after a kill, fingerprint checks, row-range reads."""

import json

import numpy as np
import pytest

from l2d_jax.agents import store as S


def _chunk_payload(rows, rng, L=8):
  n = rows.stop - rows.start
  F = 2 * n
  return dict(
      texts=[f"answer {i}" for i in range(rows.start, rows.stop)],
      examples={k: rng.random(n).astype(np.float32) for k in S.EXAMPLE_FIELDS},
      start_end_logits_Fx2xL=rng.normal(size=(F, 2, L)).astype(np.float32),
      window_example_F=np.repeat(np.arange(n), 2), gold_Fx2=rng.integers(0, L, (F, 2)))


def _write_agent(tmp_path, agent, n=10, chunk=4, seed=0, dtype="bfloat16", data="d1"):
  rng = np.random.default_rng(seed)
  writer = S.AgentWriter(tmp_path, agent, kind="model", fingerprints=S.Fingerprints(data, "t", "m"),
                         num_examples=n, chunk_examples=chunk, logits_dtype=dtype)
  payloads = {}
  for c in range(writer.num_chunks):
    payloads[c] = _chunk_payload(writer.chunk_rows(c), rng)
    writer.write_chunk(c, **payloads[c])
  writer.finish(flops_per_query=123.0)
  return payloads


def test_round_trip_and_row_ranges(tmp_path):
  p0 = _write_agent(tmp_path, "small", seed=0)
  p1 = _write_agent(tmp_path, "big", seed=1, dtype="float32")
  store = S.AgentStore(tmp_path, ["small", "big"], data_fingerprint="d1")
  f1 = store.example_table("f1_E")
  assert f1.shape == (10, 2)
  np.testing.assert_array_equal(f1[:, 0], np.concatenate([p0[c]["examples"]["f1_E"] for c in p0]))
  np.testing.assert_array_equal(f1[:, 1], np.concatenate([p1[c]["examples"]["f1_E"] for c in p1]))
  np.testing.assert_array_equal(store.example_table("f1_E", slice(3, 9)), f1[3:9])
  assert store.answers("big") == [f"answer {i}" for i in range(10)]
  logits, window_example, gold = store.logits("big", 1)
  np.testing.assert_array_equal(logits, p1[1]["start_end_logits_Fx2xL"])
  np.testing.assert_array_equal(window_example, p1[1]["window_example_F"])
  bf16, _, _ = store.logits("small", 0)  # stored as bf16: within bf16 rounding
  np.testing.assert_allclose(bf16, p0[0]["start_end_logits_Fx2xL"], rtol=1e-2, atol=1e-2)
  assert store.manifests["small"]["flops_per_query"] == 123.0


def test_resume_skips_written_chunks_and_refuses_other_settings(tmp_path):
  rng = np.random.default_rng(0)
  kwargs = dict(kind="model", fingerprints=S.Fingerprints("d1", "t", "m"), num_examples=10,
                chunk_examples=4)
  writer = S.AgentWriter(tmp_path, "a", **kwargs)
  writer.write_chunk(0, **_chunk_payload(writer.chunk_rows(0), rng))
  # a chunk whose arrays were written but not its JSON marker counts as not done
  (tmp_path / "a" / "chunk-00001.npz").write_bytes(b"partial")
  again = S.AgentWriter(tmp_path, "a", **kwargs)
  assert again.done_chunks() == {0}
  with pytest.raises(ValueError, match="missing"):
    again.finish()
  with pytest.raises(S.StoreMismatchError, match="other settings"):
    S.AgentWriter(tmp_path, "a", **{**kwargs, "fingerprints": S.Fingerprints("d2", "t", "m")})
  with pytest.raises(S.StoreMismatchError, match="did not finish"):
    S.AgentStore(tmp_path, ["a"])


def test_reader_checks_data_fingerprint(tmp_path):
  _write_agent(tmp_path, "a", data="d1")
  with pytest.raises(S.StoreMismatchError, match="other data"):
    S.AgentStore(tmp_path, ["a"], data_fingerprint="d2")
  with pytest.raises(FileNotFoundError, match="no outputs"):
    S.AgentStore(tmp_path, ["nobody"])


def test_atomic_write_leaves_no_temporary_files(tmp_path):
  S.atomic_write_json(tmp_path / "x.json", {"a": 1})
  assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
  assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_manifest_records_every_chunk_file_and_readers_refuse_a_damaged_one(tmp_path):
  _write_agent(tmp_path, "a")
  manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
  assert sorted(manifest["files"]) == [f"chunk-{c:05d}.{ext}" for c in range(3)
                                       for ext in ("json", "npz")]
  S.AgentStore(tmp_path, ["a"]).example_table("f1_E")  # intact: reads
  chunk = tmp_path / "a" / "chunk-00001.npz"
  raw = bytearray(chunk.read_bytes())
  raw[len(raw) // 2] ^= 0x01  # one bit, in the middle of the arrays
  chunk.write_bytes(bytes(raw))
  store = S.AgentStore(tmp_path, ["a"])
  store.example_table("f1_E", slice(0, 4))  # chunk 0 only: still readable
  with pytest.raises(S.StoreMismatchError, match=r"chunk-00001\.npz: damaged"):
    store.example_table("f1_E")
  with pytest.raises(S.StoreMismatchError, match=r"chunk-00001\.npz: damaged"):
    store.logits("a", 1)


def test_a_manifest_edited_after_it_was_written_is_refused(tmp_path):
  _write_agent(tmp_path, "a")
  path = tmp_path / "a" / "manifest.json"
  path.write_text(path.read_text().replace('"num_examples": 10', '"num_examples": 9'))
  with pytest.raises(S.StoreMismatchError, match="manifest.json: damaged, its content does not "
                                                 "match its checksum"):
    S.AgentStore(tmp_path, ["a"])
  path.write_text(path.read_text()[:-20])
  with pytest.raises(S.StoreMismatchError, match=r"manifest.json: damaged manifest"):
    S.AgentStore(tmp_path, ["a"])
