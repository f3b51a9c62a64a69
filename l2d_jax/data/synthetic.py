"""Seeded synthetic extractive QA in SQuAD JSON, with difficulty levels and human annotations.

The demo and the tests need QA data that downloads nothing and on which the
agents are right on different, predictable questions (else there is nothing
for a rejector to route). Each article is a small world: a cast
of invented people, each with a home town, a job, an object, a pet and a teacher
(another cast member). Each paragraph states some of these facts, one short
sentence each, and asks questions of one difficulty level:

- level 0: the paragraph states one value (the rest are teacher facts), so
  the answer is the only value word there ("Where does Baran live?" with one
  town and no other value): spotting a value word is enough, which even a
  model trained for a minute learns;
- level 1: three or four people, each with one or two relations, so the answer
  is the value of the asked kind three words after the question's person
  (relation matching and a positional binding);
- level 2: a hop through a teacher fact ("Where does the teacher of Baran
  live?" with "Baran learns from Kedel. Kedel lives in Ashholt.", and the homes
  of Baran, of another pupil and of that pupil's teacher to mislead).

Small models trained for the demo's few minutes master level 0 and are near
chance above it, so an accurate but costly agent is worth consulting only
there: `annotators` > 1 writes extra human annotations (annotator k > 0 slips
with probability `annotator_error_rate` and marks the person instead of the
value), from which the human agent is scored leave-one-out as on SQuAD.

Levels show in the question's form ("the teacher of") and in the context's
(one value among teacher facts, or several people with values), so a rejector
can learn to route.
The level is stored in each qa record under `"difficulty"` (SQuAD readers
ignore unknown keys) and read back by `difficulty_by_id`. With version "2.0", a
share of the questions asks about someone the paragraph says nothing of
(`is_impossible`, no answers). Articles are split article-disjointly into
expert_train / rejector_train / test by the same rule as the shared SQuAD
splits.json, and `write_dataset` writes such a splits file beside the data.
"""

import dataclasses
import json
import pathlib
import random
from typing import Any, NamedTuple

# The fixed vocabulary: the same for every seed, so that data drawn with
# different seeds shares one tokenizer.
PERSONS = ("Baran", "Kedel", "Lomis", "Mitor", "Ruvy", "Sazan", "Tobin", "Virek", "Dalen",
           "Fenna", "Gorim", "Hesta")
TOWNS = tuple(a + b for a in ("Ash", "Brin", "Cor", "Dun", "Fal", "Gral")
              for b in ("holt", "mere", "wick", "stead", "ford"))
JOBS = ("baker", "miller", "potter", "weaver", "smith", "tailor", "farmer", "sailor",
        "cooper", "carpenter", "mason", "healer", "hunter", "fisher", "painter", "singer")
OBJECTS = ("drum", "lamp", "kettle", "harp", "cart", "boat", "flute", "shield", "sword", "bell",
           "clock", "ladder", "barrel", "basket", "mirror", "wagon")
PETS = ("goat", "heron", "ferret", "parrot", "tortoise", "hound", "falcon", "lizard",
        "rabbit", "crow", "mule", "swan")


@dataclasses.dataclass(frozen=True)
class Relation:
  """A person's attribute: how a paragraph states it and how a question asks for it."""
  name: str
  fact: str  # with {person} and {value}
  question: str  # with {subject}: a name or "the teacher of <name>"
  values: tuple[str, ...]


# Every fact puts its one-word value three words after its person, and the teacher
# fact the teacher three words after the pupil: one positional binding for all.
RELATIONS = (
    Relation("town", "{person} lives in {value}.", "Where does {subject} live?", TOWNS),
    Relation("job", "{person} is a {value}.", "What does {subject} do?", JOBS),
    Relation("object", "{person} owns a {value}.", "What does {subject} own?", OBJECTS),
    Relation("pet", "{person} keeps a {value}.", "What does {subject} keep?", PETS),
)
TEACHER_FACT = "{pupil} learns from {teacher}."
TEACHER_SUBJECT = "the teacher of {pupil}"
LEVELS = (0, 1, 2)
SPLIT_DOC = (
    "Article-disjoint splits: experts are fine-tuned on expert_train, the rejector is "
    "trained on rejector_train (where expert outputs are honest, unseen-data outputs), and "
    "everything is reported on test. Article i of the file (in file order) goes to "
    "expert_train if i % 4 in (0, 1), rejector_train if i % 4 == 2, test if i % 4 == 3.")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What to generate; the same config always gives the same dataset.

  `level_mix` weighs levels 0, 1, 2; paragraphs (and so questions) are split
  between levels in exactly these proportions, up to rounding. With
  `version="2.0"`, each question is unanswerable with probability
  `unanswerable_rate`. Level-0 paragraphs ask one question, the others
  `questions_per_paragraph`.
  """
  seed: int = 0
  n_articles: int = 64
  paragraphs_per_article: int = 4
  questions_per_paragraph: int = 2
  level_mix: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
  version: str = "1.1"
  unanswerable_rate: float = 0.25
  cast_size: int = 8
  annotators: int = 1
  annotator_error_rate: float = 0.1

  def __post_init__(self):
    if self.version not in ("1.1", "2.0"):
      raise ValueError(f"version must be '1.1' or '2.0', got {self.version!r}")
    if len(self.level_mix) != len(LEVELS) or min(self.level_mix) < 0 or sum(self.level_mix) <= 0:
      raise ValueError(f"level_mix needs {len(LEVELS)} non-negative weights, got {self.level_mix}")
    if not 1 <= self.questions_per_paragraph <= len(RELATIONS):
      raise ValueError(f"questions_per_paragraph must be in 1..{len(RELATIONS)}")
    largest = min(len(PERSONS), *(len(r.values) for r in RELATIONS))
    if not 6 <= self.cast_size <= largest:
      raise ValueError(f"cast_size must be in 6..{largest}, got {self.cast_size}")
    if self.annotators < 1 or not 0.0 <= self.annotator_error_rate <= 1.0:
      raise ValueError(f"need annotators >= 1 and annotator_error_rate in [0, 1], got "
                       f"{self.annotators}, {self.annotator_error_rate}")
    if not 0.0 <= self.unanswerable_rate <= 1.0:
      raise ValueError(f"unanswerable_rate must be in [0, 1], got {self.unanswerable_rate}")

  @property
  def file_name(self) -> str:
    """The data file's name, also its key in the splits file."""
    return f"synthetic-v{self.version}.json"


class DatasetPaths(NamedTuple):
  """Where `write_dataset` put the SQuAD JSON file and its splits file."""
  data: pathlib.Path
  splits: pathlib.Path


@dataclasses.dataclass(frozen=True)
class _Question:
  """One question before rendering: its text, answer (None if unanswerable) and level."""
  text: str
  answer: tuple[str, str] | None  # (person, relation name) whose value answers it
  level: int


class _World:
  """One article's cast: each person's value for every relation, and who teaches whom."""

  def __init__(self, rng: random.Random, cast_size: int):
    self.cast = rng.sample(PERSONS, cast_size)
    self.values = {r.name: dict(zip(self.cast, rng.sample(r.values, cast_size))) for r in RELATIONS}
    # A single cycle: the teacher of cast[i] is cast[i + 1].
    self.teacher = {p: self.cast[(i + 1) % cast_size] for i, p in enumerate(self.cast)}

  def fact(self, person: str, relation: Relation) -> str:
    """The sentence stating `person`'s value of `relation`."""
    return relation.fact.format(person=person, value=self.values[relation.name][person])


def _level_quota(mix: tuple[float, ...], n: int) -> list[int]:
  """Level of each of `n` paragraphs, in exact `mix` proportions (largest remainder), unshuffled."""
  total = sum(mix)
  exact = [w / total * n for w in mix]
  counts = [int(x) for x in exact]
  by_remainder = sorted(range(len(mix)), key=lambda i: (counts[i] - exact[i], i))
  for i in by_remainder[:n - sum(counts)]:
    counts[i] += 1
  return [level for level, count in zip(LEVELS, counts) for _ in range(count)]


def _paragraph(rng: random.Random, world: _World, level: int, n_questions: int,
               unanswerable_rate: float) -> tuple[list[str], list[_Question]]:
  """The shuffled sentences and the questions of one paragraph of the given level."""
  build = (_level0, _level1, _level2)[level]
  sentences, asked = build(rng, world, n_questions)
  questions = []
  for relation, subject, answer, missing_subject in asked:
    if rng.random() < unanswerable_rate:
      questions.append(_Question(relation.question.format(subject=missing_subject), None, level))
    else:
      questions.append(_Question(relation.question.format(subject=subject), answer, level))
  rng.shuffle(sentences)
  return sentences, questions


# What a level builder returns per question: the relation asked, the subject
# that makes it answerable, its answer (person, relation name), and a subject
# the paragraph says nothing of (for unanswerable v2.0 questions).
_Asked = tuple[Relation, str, tuple[str, str], str]


def _level0(rng: random.Random, world: _World,
            n_questions: int) -> tuple[list[str], list[_Asked]]:
  """One fact among teacher facts: the answer is the paragraph's only value word."""
  del n_questions  # one value, so one question
  relation = rng.choice(RELATIONS)
  i, j = _two_apart(rng, len(world.cast))
  person = world.cast[i]
  pupils = [world.cast[j], world.cast[(j + 1) % len(world.cast)]]
  sentences = [world.fact(person, relation)]
  sentences += [TEACHER_FACT.format(pupil=p, teacher=world.teacher[p]) for p in pupils]
  return sentences, [(relation, person, (person, relation.name),
                      _absent(rng, world, [person] + pupils + [world.teacher[pupils[1]]]))]


def _level1(rng: random.Random, world: _World,
            n_questions: int) -> tuple[list[str], list[_Asked]]:
  """The asked relations stated for every one of three or four people."""
  relations = rng.sample(RELATIONS, 1 if n_questions <= 2 else 2)
  people = rng.sample(world.cast, rng.choice((3, 4)))
  sentences = [world.fact(p, r) for p in people for r in relations]
  pairs = rng.sample([(p, r) for p in people for r in relations], n_questions)
  return sentences, [(r, p, (p, r.name), _absent(rng, world, people)) for p, r in pairs]


def _level2(rng: random.Random, world: _World,
            n_questions: int) -> tuple[list[str], list[_Asked]]:
  """Two pupils and their teachers, all four with the asked relations; ask via the teacher."""
  i, j = _two_apart(rng, len(world.cast))
  pupils = [world.cast[i], world.cast[j]]
  teachers = [world.teacher[p] for p in pupils]
  relations = rng.sample(RELATIONS, (n_questions + 1) // 2)
  sentences = [TEACHER_FACT.format(pupil=p, teacher=t) for p, t in zip(pupils, teachers)]
  sentences += [world.fact(p, r) for p in pupils + teachers for r in relations]
  pairs = rng.sample([(p, r) for p in pupils for r in relations], n_questions)
  # Unanswerable: the teacher of a teacher, whom the paragraph does not name.
  return sentences, [(r, TEACHER_SUBJECT.format(pupil=p), (world.teacher[p], r.name),
                      TEACHER_SUBJECT.format(pupil=rng.choice(teachers))) for p, r in pairs]


def _absent(rng: random.Random, world: _World, present: list[str]) -> str:
  """A cast member who is not among `present`."""
  return rng.choice([p for p in world.cast if p not in present])


def _two_apart(rng: random.Random, n: int) -> tuple[int, int]:
  """Two cycle positions whose pupil/teacher pairs (i, i+1), (j, j+1) are four people."""
  i = rng.randrange(n)
  j = rng.choice([k for k in range(n) if (k - i) % n not in (n - 1, 0, 1)])
  return i, j


def _render(rng: random.Random, qid_prefix: str, world: _World, sentences: list[str],
            questions: list[_Question], config: SyntheticConfig) -> dict[str, Any]:
  """A SQuAD paragraph dict; answer offsets come from where each fact sentence was placed."""
  context, sentence_start = "", {}
  for sentence in sentences:
    context += (" " if context else "")
    sentence_start[sentence] = len(context)
    context += sentence
  qas = []
  for k, q in enumerate(questions):
    qa: dict[str, Any] = {"id": f"{qid_prefix}-q{k}", "question": q.text, "answers": []}
    if q.answer is not None:
      person, name = q.answer
      relation = next(r for r in RELATIONS if r.name == name)
      sentence = world.fact(person, relation)
      value = world.values[name][person]
      start = sentence_start[sentence] + sentence.rindex(value)
      qa["answers"] = [{"text": value, "answer_start": start}]
      for _ in range(config.annotators - 1):
        slipped = rng.random() < config.annotator_error_rate
        qa["answers"].append({"text": person, "answer_start": sentence_start[sentence]}
                             if slipped else {"text": value, "answer_start": start})
    if config.version == "2.0":
      qa["is_impossible"] = q.answer is None
    qa["difficulty"] = q.level
    qas.append(qa)
  return {"context": context, "qas": qas}


def generate(config: SyntheticConfig) -> dict[str, Any]:
  """The dataset as a SQuAD JSON dict (`version`, `data` of titled articles)."""
  rng = random.Random(config.seed)
  n_paragraphs = config.n_articles * config.paragraphs_per_article
  levels = _level_quota(config.level_mix, n_paragraphs)
  rng.shuffle(levels)
  unanswerable_rate = config.unanswerable_rate if config.version == "2.0" else 0.0
  articles = []
  for a in range(config.n_articles):
    world = _World(rng, config.cast_size)
    paragraphs = []
    for p in range(config.paragraphs_per_article):
      level = levels[a * config.paragraphs_per_article + p]
      sentences, questions = _paragraph(rng, world, level, config.questions_per_paragraph,
                                        unanswerable_rate)
      paragraphs.append(_render(rng, f"s{config.seed}-a{a:04d}-p{p}", world, sentences,
                                questions, config))
    articles.append({"title": f"synthetic_{a:04d}", "paragraphs": paragraphs})
  return {"version": "v2.0" if config.version == "2.0" else "1.1", "data": articles}


def difficulty_by_id(data: dict[str, Any]) -> dict[str, int]:
  """Question id -> difficulty level, for a dict made by `generate`."""
  return {qa["id"]: qa["difficulty"]
          for article in data["data"] for paragraph in article["paragraphs"]
          for qa in paragraph["qas"]}


def article_splits(data: dict[str, Any]) -> dict[str, list[str]]:
  """Article titles per split, by the rule in `SPLIT_DOC` (as the shared SQuAD splits)."""
  splits = {"expert_train": [], "rejector_train": [], "test": []}
  names = ("expert_train", "expert_train", "rejector_train", "test")
  for i, article in enumerate(data["data"]):
    splits[names[i % 4]].append(article["title"])
  return splits


def write_dataset(config: SyntheticConfig, out_dir: str | pathlib.Path) -> DatasetPaths:
  """Writes `<out_dir>/synthetic-v<version>.json` and `<out_dir>/splits.json`."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  data = generate(config)
  paths = DatasetPaths(out_dir / config.file_name, out_dir / "splits.json")
  paths.data.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  splits = {"_doc": SPLIT_DOC, "_config": dataclasses.asdict(config),
            config.file_name: article_splits(data)}
  paths.splits.write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
  return paths
