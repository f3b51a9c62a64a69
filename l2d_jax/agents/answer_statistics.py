"""What a model agent's answer text says about it: statistics a rejector reads beside its scores.

The span statistics (`store.SPAN_STATISTICS`) say how sure the model was; they
do not say what kind of span it chose. The answer's length does: a long span
is more often partly wrong (F1 below 1) at the same probability. On SQuAD v1.1
(rejector_train -> test, minilm-4L), a logistic model of the agent's F1 over
its span statistics separates right from wrong answers with AUC 0.761, and
0.780 with the answer's word count added; a rejector reading both reaches AIQ
0.796 against 0.792 for the statistics alone and for the best cascade.

They are derived from the answer text whenever features are read (the store's
answers, an exported agent's decoded answers), so every path computes the same
numbers and stores need no recompute.
"""

from collections.abc import Sequence

import numpy as np

NAMES = ("answer_words_E",)  # float32 [E] each, in this order


def answer_statistics(texts: Sequence[str]) -> dict[str, np.ndarray]:
  """`NAMES` for each answer: its number of whitespace-separated words (0 when empty)."""
  return {"answer_words_E": np.array([len(text.split()) for text in texts], np.float32)}
