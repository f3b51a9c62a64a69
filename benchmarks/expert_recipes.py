"""Fine-tuning recipes for the truncated MiniLM experts, each scored on the test articles.

For every recipe `LAYERS:MAX_SEQ_LEN:BATCH:LR:EPOCHS` (for instance `3:256:16:1e-4:2`):
all-MiniLM-L6-v2 truncated to LAYERS is fine-tuned on the expert_train articles
of ../shared/data/squad/dev-v1.1.json exactly as an experiment's model agent is
(`train.finetune`, windows with stride MAX_SEQ_LEN // 3 as `minilm_expert`
makes them, AdamW with 10% warmup and linear decay, dropout on), then answers
the test articles (best span of at most 30 tokens over all windows) and is
scored with the official SQuAD v1.1 EM/F1. One JSON line per recipe is appended
to `--out`: the recipe, steps, fine-tuning and evaluation wall times, EM and F1.
Fine-tuning resumes from `--workdir` when rerun; `--deadline-s` stops starting
new recipes after that many seconds (for a lent GPU's budget).

    python benchmarks/expert_recipes.py --workdir /tmp/recipes --out recipes.jsonl \\
        3:256:16:1e-4:2 4:256:16:2e-4:2
"""

import argparse
import dataclasses
import json
import pathlib
import time

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"
MAX_ANSWER_LEN = 30


@dataclasses.dataclass(frozen=True)
class Recipe:
  layers: int
  max_seq_len: int
  batch_size: int
  learning_rate: float
  epochs: float

  @classmethod
  def parse(cls, text: str) -> "Recipe":
    layers, seq, batch, lr, epochs = text.split(":")
    return cls(int(layers), int(seq), int(batch), float(lr), float(epochs))

  @property
  def name(self) -> str:
    return (f"{self.layers}L_s{self.max_seq_len}_b{self.batch_size}_lr{self.learning_rate:g}"
            f"_e{self.epochs:g}")


def _window_outputs(model, batch):
  """Best span per window (a module-level function, so evaluation compiles once per shape)."""
  from l2d_jax.agents import decode  # pylint: disable=import-outside-toplevel
  from l2d_jax.train.finetune import MODEL_INPUTS  # pylint: disable=import-outside-toplevel
  start_BxL, end_BxL = model(*(batch[name] for name in MODEL_INPUTS))
  return decode.window_best_spans(start_BxL, end_BxL, batch["offsets_FxLx2"][..., 0] >= 0,
                                  MAX_ANSWER_LEN)


def evaluate(model, features, examples) -> dict:
  """Official SQuAD v1.1 EM/F1 (fractions) of `model`'s answers to `examples`."""
  from l2d_jax.agents import decode  # pylint: disable=import-outside-toplevel
  from l2d_jax.metrics import squad as squad_metric  # pylint: disable=import-outside-toplevel
  from l2d_jax.train import inference  # pylint: disable=import-outside-toplevel
  from l2d_jax.train.finetune import MODEL_INPUTS  # pylint: disable=import-outside-toplevel
  inputs = {name: getattr(features, name) for name in (*MODEL_INPUTS, "offsets_FxLx2")}
  windows = inference.apply_in_batches(model, _window_outputs, inputs, batch_size=256)
  decoded = decode.decode_examples(windows, features.example_index_F, features.offsets_FxLx2,
                                   [e.context for e in examples])
  scores = squad_metric.score_v1(examples, {e.id: t for e, t in zip(examples, decoded.text)})
  return {"em": scores["exact_match"] / 100, "f1": scores["f1"] / 100}


def run_recipe(recipe: Recipe, workdir: pathlib.Path, splits: dict, tokenizer,
               model_dir) -> dict:
  """Fine-tunes (or resumes) one recipe's expert and scores it on the test split."""
  from l2d_jax.data import feature_cache  # pylint: disable=import-outside-toplevel
  from l2d_jax.data.features import FeatureParams  # pylint: disable=import-outside-toplevel
  from l2d_jax.models import hf_import  # pylint: disable=import-outside-toplevel
  from l2d_jax.train import finetune, loop  # pylint: disable=import-outside-toplevel
  from l2d_jax.train.optim import OptimConfig  # pylint: disable=import-outside-toplevel
  params = FeatureParams(recipe.max_seq_len, recipe.max_seq_len // 3, 64)
  train = feature_cache.cached_features(splits["expert_train"], tokenizer, params,
                                        workdir / "cache")
  test = feature_cache.cached_features(splits["test"], tokenizer, params, workdir / "cache")
  model = hf_import.load_pretrained(model_dir, task="span", num_layers=recipe.layers).model
  settings = finetune.FinetuneSettings(
      epochs=recipe.epochs, batch_size=recipe.batch_size, progress=False,
      optim=OptimConfig(learning_rate=recipe.learning_rate, warmup_fraction=0.1))
  begin = time.perf_counter()
  trainable = finetune.finetune(model, train, settings, workdir=workdir / recipe.name)
  finetune_s = time.perf_counter() - begin
  begin = time.perf_counter()
  scores = evaluate(trainable.model(), test, splits["test"])
  steps = round(recipe.epochs * loop.steps_per_epoch(train.num_features, recipe.batch_size))
  return {"recipe": recipe.name, **dataclasses.asdict(recipe), "steps": steps,
          "train_windows": int(train.num_features), "finetune_s": round(finetune_s, 1),
          "eval_s": round(time.perf_counter() - begin, 1), **scores}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("recipes", nargs="+", type=Recipe.parse,
                      help="LAYERS:MAX_SEQ_LEN:BATCH:LR:EPOCHS")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--deadline-s", type=float, default=0.0)
  args = parser.parse_args()

  import jax  # pylint: disable=import-outside-toplevel
  from l2d_jax.data import squad  # pylint: disable=import-outside-toplevel
  from l2d_jax.data.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  from l2d_jax.models.hub import resolve_model_dir  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  model_dir = resolve_model_dir("all-MiniLM-L6-v2")
  tokenizer = load_tokenizer(model_dir)
  splits = {name: squad.read_split(SHARED / "dev-v1.1.json", SHARED / "splits.json",
                                   name).examples for name in ("expert_train", "test")}
  workdir = pathlib.Path(args.workdir)
  for recipe in args.recipes:
    if args.deadline_s and time.perf_counter() - start > args.deadline_s:
      print(f"deadline: {recipe.name} not started")
      continue
    row = {**run_recipe(recipe, workdir, splits, tokenizer, model_dir),
           "backend": jax.default_backend()}
    print(json.dumps(row), flush=True)
    with open(args.out, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
