"""The statistics of an agent's answer text that a rejector reads beside its span statistics."""

import numpy as np

from l2d_jax.agents import answer_statistics


def test_answer_statistics_count_the_words_of_each_answer():
  stats = answer_statistics.answer_statistics(["the Eiffel Tower", "", "1889", " two\twords \n"])
  assert list(stats) == list(answer_statistics.NAMES)
  np.testing.assert_array_equal(stats["answer_words_E"], [3, 0, 1, 2])
  assert stats["answer_words_E"].dtype == np.float32
