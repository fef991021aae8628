"""bAbI-style question answering: a seeded story generator, bAbI's file format, and tensors for memory networks.

Weston et al. (2016), "Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks", set twenty
tasks of short stories with questions. Their files cannot be fetched offline, so this module *generates*
stories of the same kinds, with actors, places, objects and sentence templates of our own, and writes them
in the same file format. They are "bAbI-style" stories, not bAbI: results on them are not bAbI results.

The file format (one story after another; line ids count from 1 again at each story's first line)::

    1 Ada went to the attic.
    2 Basil ran to the cellar.
    3 Where is Ada?\tattic\t1

A statement line is ``id sentence``; a question line is ``id question\tanswer\tsupporting ids`` where the
supporting ids name the statements that imply the answer. :func:`parse_babi` reads this format, so real bAbI
files (whose question lines carry a space before the tab) load the same way.

Tasks generated (numbered as in Weston et al. 2016, section 3):

- task 1, single supporting fact: ``Where is Ada?`` after some moves;
- task 2, two supporting facts: ``Where is the kettle?``: who holds it, and where that actor went;
- task 3, three supporting facts: ``Where was the kettle before the porch?``: the object's path;
- task 4, two argument relations: ``What is north of the attic?`` from two ``The X is north of the Y.`` facts;
- task 6, yes/no questions: ``Is Ada in the attic?``.

From stories to tensors: :func:`babi_samples` turns each question into a sample (the story's statements
before it, the question, the answer, the supporting statements), :func:`build_vocab` collects the words and
:func:`vectorize_babi` pads everything into word-id tensors.

Shapes: ``B`` samples, ``S`` sentences per story (the memory size), ``L`` words per sentence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import NamedTuple

import torch

from memlib.validate import check_int

#: The task numbers (as in Weston et al. 2016) this module generates, with their names.
TASKS = {
    1: "single supporting fact",
    2: "two supporting facts",
    3: "three supporting facts",
    4: "two argument relations",
    6: "yes/no questions",
}

# Our own vocabularies and templates (not bAbI's).
ACTORS = ("Ada", "Basil", "Cleo", "Dmitri", "Esme", "Farid", "Greta", "Hugo")
LOCATIONS = ("attic", "cellar", "library", "porch", "studio", "garage")
OBJECTS = ("lantern", "violin", "compass", "kettle", "umbrella", "telescope")
MOVE_VERBS = ("went to", "walked to", "ran to", "hurried to")
TAKE_VERBS = ("picked up", "took", "grabbed")
DROP_VERBS = ("dropped", "put down", "set down")
AXES = (("north", "south"), ("east", "west"))  # (d, opposite of d)

PAD = "<pad>"


class BabiLine(NamedTuple):
    """One line of a story: a statement (``answer`` is None) or a question.

    ``supporting`` holds line ids (1-based, as in the file) of the statements that imply the answer.

    >>> BabiLine._fields
    ('text', 'answer', 'supporting')
    """

    text: str
    answer: str | None = None
    supporting: tuple[int, ...] = ()

    @property
    def is_question(self) -> bool:
        return self.answer is not None


Story = tuple[BabiLine, ...]  # line i has id i + 1


class BabiSample(NamedTuple):
    """One question with its context, as memory networks take it.

    >>> babi_samples(generate_babi(1, 1, seed=0))[0]._fields
    ('sentences', 'question', 'answer', 'supporting')
    """

    sentences: tuple[str, ...]  # the story's statements before the question, in story order
    question: str
    answer: str
    supporting: tuple[int, ...]  # 0-based indices into ``sentences``


# ---------------------------------------------------------------------------------------------
# Generation: a small world simulated line by line; questions are asked about its state.
# ---------------------------------------------------------------------------------------------


class _World:
    """Actors move, take and drop objects; each fact remembers the line ids that show it."""

    def __init__(self, rng: random.Random, actors: Sequence[str], objects: Sequence[str]):
        self.rng, self.actors, self.objects = rng, list(actors), list(objects)
        self.lines: list[BabiLine] = []
        self.where: dict[str, tuple[str, int]] = {}  # actor -> (location, id of the move line)
        self.holder: dict[str, tuple[str, int]] = {}  # object -> (actor, id of the take line)
        self.lying: dict[str, tuple[str, tuple[int, ...]]] = {}  # dropped object -> (location, lines)
        # object -> the locations it has been in, in order, each with the lines that show it was there
        self.path: dict[str, list[tuple[str, tuple[int, ...]]]] = {o: [] for o in objects}

    def add(self, line: BabiLine) -> int:
        self.lines.append(line)
        return len(self.lines)

    @property
    def statements(self) -> int:
        return sum(not line.is_question for line in self.lines)

    def move(self, actor: str) -> None:
        here = self.where.get(actor, (None, 0))[0]
        place = self.rng.choice([loc for loc in LOCATIONS if loc != here])
        line = self.add(BabiLine(f"{actor} {self.rng.choice(MOVE_VERBS)} the {place}."))
        self.where[actor] = (place, line)
        for obj, (holder, took) in self.holder.items():
            if holder == actor:  # the object travels with its holder
                self.path[obj].append((place, (took, line)))

    def takeable(self) -> list[tuple[str, str]]:
        """(actor, object) pairs where the actor's place is known and the object is free there (or unseen)."""
        pairs = []
        for actor, (place, _) in self.where.items():
            for obj in self.objects:
                unseen = obj not in self.holder and obj not in self.lying
                if unseen or (obj in self.lying and self.lying[obj][0] == place):
                    pairs.append((actor, obj))
        return pairs

    def take(self, actor: str, obj: str) -> None:
        place, moved = self.where[actor]
        line = self.add(BabiLine(f"{actor} {self.rng.choice(TAKE_VERBS)} the {obj}."))
        if obj not in self.lying:  # first sighting: the object is where its taker is
            self.path[obj].append((place, (moved, line)))
        self.lying.pop(obj, None)
        self.holder[obj] = (actor, line)

    def drop(self, actor: str, obj: str) -> None:
        place, moved = self.where[actor]
        line = self.add(BabiLine(f"{actor} {self.rng.choice(DROP_VERBS)} the {obj}."))
        del self.holder[obj]
        self.lying[obj] = (place, (moved, line))

    def random_action(self) -> None:
        """Move (half the time), take or drop, whichever is possible."""
        kind = self.rng.choices(("move", "take", "drop"), weights=(2, 1, 1))[0]
        takeable = self.takeable()
        if kind == "take" and takeable:
            self.take(*self.rng.choice(takeable))
        elif kind == "drop" and self.holder:
            obj = self.rng.choice(sorted(self.holder))
            self.drop(self.holder[obj][0], obj)
        else:
            self.move(self.rng.choice(self.actors))

    def object_location(self, obj: str) -> tuple[str, tuple[int, ...]] | None:
        if obj in self.lying:
            return self.lying[obj]
        if obj in self.holder:
            actor, took = self.holder[obj]
            place, moved = self.where[actor]
            return place, (took, moved)
        return None

    def ask(self, question: str, answer: str, supporting: Iterable[int]) -> None:
        self.add(BabiLine(question, answer, tuple(sorted(set(supporting)))))


def _moves_story(rng: random.Random, yes_no: bool) -> Story:
    """Tasks 1 and 6: five rounds of two moves and a question about an actor seen moving."""
    world = _World(rng, rng.sample(ACTORS, 4), ())
    for _ in range(5):
        for _ in range(2):
            world.move(rng.choice(world.actors))
        actor = rng.choice(sorted(world.where))
        place, line = world.where[actor]
        if not yes_no:
            world.ask(f"Where is {actor}?", place, [line])
        elif rng.random() < 0.5:
            world.ask(f"Is {actor} in the {place}?", "yes", [line])
        else:
            other = rng.choice([loc for loc in LOCATIONS if loc != place])
            world.ask(f"Is {actor} in the {other}?", "no", [line])
    return tuple(world.lines)


def _objects_story(rng: random.Random) -> Story:
    """Task 2: five questions about where an object is, each after one to four actions."""
    world = _World(rng, rng.sample(ACTORS, 4), rng.sample(OBJECTS, 4))
    for _ in range(5):
        for _ in range(rng.randint(1, 4)):
            world.random_action()
        while not (known := [o for o in world.objects if world.object_location(o) is not None]):
            world.random_action()
        obj = rng.choice(known)
        place, lines = world.object_location(obj)
        world.ask(f"Where is the {obj}?", place, lines)
    return tuple(world.lines)


def _before_candidates(world: _World) -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(object, place, answer, lines) for 'Where was the object before the place?' that three facts answer."""
    found = []
    for obj, path in world.path.items():
        places = [place for place, _ in path]
        for k in range(1, len(path)):
            lines = set(path[k - 1][1]) | set(path[k][1])
            # the place must be visited once (else 'before' is ambiguous) and three statements must show it
            if places.count(places[k]) == 1 and len(lines) == 3:
                found.append((obj, places[k], places[k - 1], tuple(lines)))
    return found


def _path_story(rng: random.Random) -> Story:
    """Task 3: 'Where was the O before the P?', asked when three statements answer it; up to five per story."""
    while True:  # a story with no answerable question is drawn again (rare)
        world = _World(rng, rng.sample(ACTORS, 3), rng.sample(OBJECTS, 3))
        asked: set[tuple[str, str]] = set()
        while world.statements < 40 and len(asked) < 5:
            for _ in range(rng.randint(2, 6)):
                world.random_action()
            fresh = [c for c in _before_candidates(world) if c[:2] not in asked]
            if fresh:
                obj, place, answer, lines = rng.choice(fresh)
                asked.add((obj, place))
                world.ask(f"Where was the {obj} before the {place}?", answer, lines)
        if asked:  # the story ends at its last question
            last = max(i for i, line in enumerate(world.lines) if line.is_question)
            return tuple(world.lines[: last + 1])


def _relations_story(rng: random.Random) -> Story:
    """Task 4: three places in a line, two facts relating neighbours, one question about one fact."""
    d, opposite = rng.choice(AXES)
    first, middle, last = rng.sample(LOCATIONS, 3)  # first is d of middle, middle is d of last
    facts = []
    for upper, lower in ((first, middle), (middle, last)):
        sentence = rng.choice([f"The {upper} is {d} of the {lower}.", f"The {lower} is {opposite} of the {upper}."])
        facts.append((upper, lower, sentence))
    rng.shuffle(facts)
    world = _World(rng, (), ())
    for _, _, sentence in facts:
        world.add(BabiLine(sentence))
    line = rng.randrange(2)
    upper, lower, _ = facts[line]
    direction = rng.choice((d, opposite))
    subject, reference = (upper, lower) if direction == d else (lower, upper)  # subject is `direction` of reference
    if rng.random() < 0.5:
        world.ask(f"What is {direction} of the {reference}?", subject, [line + 1])
    else:
        world.ask(f"What is the {subject} {direction} of?", reference, [line + 1])
    return tuple(world.lines)


def generate_babi(task: int, n_stories: int, *, seed: int = 0) -> list[Story]:
    """``n_stories`` bAbI-style stories for ``task`` (a key of :data:`TASKS`), the same for the same seed.

    Every question's answer follows from its supporting statements, which precede it in its story.
    Stories hold five questions (task 3: one to five, task 4: one), as in Weston et al. (2016).

    >>> stories = generate_babi(1, 2, seed=0)
    >>> len(stories)
    2
    >>> generate_babi(1, 2, seed=0) == stories  # the same seed, the same stories
    True
    """
    if task not in TASKS:
        raise ValueError(f"generate_babi: expected task in {sorted(TASKS)}, got {task!r}")
    check_int("generate_babi", "n_stories", n_stories, low=0)
    rng = random.Random(f"babi-style task {task} seed {seed}")  # str seeds hash the same in every process
    makers = {
        1: lambda: _moves_story(rng, yes_no=False),
        2: lambda: _objects_story(rng),
        3: lambda: _path_story(rng),
        4: lambda: _relations_story(rng),
        6: lambda: _moves_story(rng, yes_no=True),
    }
    return [makers[task]() for _ in range(n_stories)]


# ---------------------------------------------------------------------------------------------
# The file format: writing and reading.
# ---------------------------------------------------------------------------------------------


def format_babi(stories: Iterable[Story]) -> str:
    """The stories as bAbI file text (one line per statement or question, ending with a newline).

    >>> print(format_babi(generate_babi(1, 1, seed=0)).splitlines()[0])
    1 Farid went to the attic.
    """
    out = []
    for story in stories:
        for i, line in enumerate(story, start=1):
            if line.is_question:
                out.append(f"{i} {line.text}\t{line.answer}\t{' '.join(map(str, line.supporting))}")
            else:
                out.append(f"{i} {line.text}")
    return "".join(f"{line}\n" for line in out)


def parse_babi(text: str) -> list[Story]:
    """Stories from bAbI file text: ours, or the real files of Weston et al. (2016).

    A line id of 1 starts a story; any other id must follow the previous one. Whitespace around a
    question (real files have a space before the tab) is dropped. Supporting ids must name earlier lines.

    >>> stories = parse_babi("1 Ada went to the attic.\\n2 Where is Ada?\\tattic\\t1\\n")
    >>> len(stories), format_babi(stories) == format_babi(parse_babi(format_babi(stories)))
    (1, True)
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_babi: expected the file's text as a str, got {type(text).__name__}")
    stories: list[list[BabiLine]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        head, _, rest = raw.strip().partition(" ")
        if not head.isdigit() or not rest:
            raise ValueError(f"parse_babi: line {number}: expected 'id text', got {raw!r}")
        line_id = int(head)
        expected = len(stories[-1]) + 1 if stories else 1
        if line_id == 1:
            stories.append([])
        elif line_id != expected:
            raise ValueError(
                f"parse_babi: line {number}: expected line id {expected} (or 1 to start a story), got {line_id}"
            )
        if "\t" not in rest:
            stories[-1].append(BabiLine(rest.strip()))
            continue
        fields = rest.split("\t")
        if len(fields) not in (2, 3):
            raise ValueError(
                f"parse_babi: line {number}: expected 'id question\\tanswer\\tsupporting ids', got {raw!r}"
            )
        question, answer, support = fields[0].strip(), fields[1].strip(), fields[2] if len(fields) == 3 else ""
        if not all(s.isdigit() for s in support.split()):
            raise ValueError(f"parse_babi: line {number}: expected supporting ids as integers, got {support!r}")
        supporting = tuple(int(s) for s in support.split())
        bad = [s for s in supporting if not 1 <= s < line_id]
        if bad:
            raise ValueError(f"parse_babi: line {number}: expected supporting ids in [1, {line_id - 1}], got {bad}")
        stories[-1].append(BabiLine(question, answer, supporting))
    return [tuple(story) for story in stories]


def read_babi(path: str | PathLike) -> list[Story]:
    """Stories from a bAbI-format file (e.g. ``qa1_single-supporting-fact_train.txt``).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "qa1.txt")
    >>> write_babi(path, generate_babi(1, 3, seed=0))
    >>> len(read_babi(path))
    3
    """
    with open(path, encoding="utf-8") as f:
        return parse_babi(f.read())


def write_babi(path: str | PathLike, stories: Iterable[Story]) -> None:
    """Write ``stories`` to ``path`` in the bAbI text format (:func:`format_babi`); :func:`read_babi` reads it back.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "qa1.txt")
    >>> stories = generate_babi(1, 2, seed=0)
    >>> write_babi(path, stories)
    >>> format_babi(read_babi(path)) == format_babi(stories)
    True
    """
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_babi(stories))


def babi_samples(stories: Iterable[Story]) -> list[BabiSample]:
    """One sample per question: the statements before it in its story (questions left out), and so on.

    >>> samples = babi_samples(generate_babi(1, 2, seed=0))
    >>> samples[0].question, samples[0].answer
    ('Where is Farid?', 'garage')
    """
    samples = []
    for n, story in enumerate(stories):
        sentences: list[str] = []
        index: dict[int, int] = {}  # line id -> position in `sentences`
        for line_id, line in enumerate(story, start=1):
            if not line.is_question:
                index[line_id] = len(sentences)
                sentences.append(line.text)
                continue
            missing = [s for s in line.supporting if s not in index]
            if missing:
                raise ValueError(
                    f"babi_samples: story {n}, line {line_id}: expected supporting ids of statements, got {missing}"
                )
            samples.append(
                BabiSample(tuple(sentences), line.text, line.answer, tuple(index[s] for s in line.supporting))
            )
    return samples


# ---------------------------------------------------------------------------------------------
# Words and tensors.
# ---------------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation dropped (``"Where is Ada?"`` -> ``["where", "is", "ada"]``).

    >>> tokenize("Where is Ada?")
    ['where', 'is', 'ada']
    """
    return re.findall(r"\w+", text.lower())


class Vocab:
    """Words and their ids; id 0 is padding (``"<pad>"``). An answer is one word: the answer field, lower-cased.

    >>> vocab = build_vocab(babi_samples(generate_babi(1, 2, seed=0)))
    >>> vocab.decode([vocab.id("farid"), 0, vocab.id("garage")])  # padding dropped
    ['farid', 'garage']
    """

    def __init__(self, words: Iterable[str]):
        self.words: tuple[str, ...] = (PAD, *sorted(set(words) - {PAD}))
        self._ids = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words)"

    def id(self, word: str) -> int:
        try:
            return self._ids[word]
        except KeyError:
            raise ValueError(f"Vocab: expected a word of the vocabulary ({len(self)} words), got {word!r}") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words for ids, padding dropped."""
        return [self.words[int(i)] for i in ids if int(i) != 0]


def build_vocab(samples: Iterable[BabiSample]) -> Vocab:
    """Every word of the sentences and questions, and every answer.

    >>> build_vocab(babi_samples(generate_babi(1, 2, seed=0)))
    Vocab(21 words)
    """
    words: set[str] = set()
    for sample in samples:
        for sentence in sample.sentences:
            words.update(tokenize(sentence))
        words.update(tokenize(sample.question))
        words.add(sample.answer.lower())
    return Vocab(words)


class BabiBatch(NamedTuple):
    """What :func:`vectorize_babi` returns.

    >>> BabiBatch._fields
    ('stories', 'questions', 'answers', 'supporting')
    """
    stories: torch.Tensor  # (B, S, L) int64 word ids in story order; 0 pads words, then whole sentences
    questions: torch.Tensor  # (B, L) int64 word ids, 0 after the last word
    answers: torch.Tensor  # (B,) int64 word id of the answer
    supporting: torch.Tensor  # (B, S) bool: True at the supporting sentences


def vectorize_babi(
    samples: Sequence[BabiSample],
    vocab: Vocab,
    memory_size: int,
    *,
    sentence_length: int | None = None,
    device: torch.device | str = "cpu",
) -> BabiBatch:
    """Samples as padded word-id tensors: ``S = memory_size`` sentences per story, ``L`` words per sentence.

    ``L`` is ``sentence_length``, or the longest sentence or question when None. A story with more
    sentences than ``memory_size`` is an error (MemN2N kept only the most recent 50: trim the samples'
    sentences to do the same).

    >>> samples = babi_samples(generate_babi(1, 2, seed=0))
    >>> batch = vectorize_babi(samples, build_vocab(samples), memory_size=10)
    >>> tuple(batch.stories.shape), tuple(batch.questions.shape), tuple(batch.answers.shape)
    ((10, 10, 5), (10, 5), (10,))
    """
    check_int("vectorize_babi", "memory_size", memory_size, low=1)
    if not samples:
        raise ValueError("vectorize_babi: expected at least one sample, got none")
    for n, sample in enumerate(samples):
        if len(sample.sentences) > memory_size:
            raise ValueError(
                f"vectorize_babi: sample {n} has a story of {len(sample.sentences)} sentences, expected at most "
                f"memory_size={memory_size}: raise memory_size or keep the last {memory_size} sentences"
            )
    stories = [[tokenize(s) for s in sample.sentences] for sample in samples]
    questions = [tokenize(sample.question) for sample in samples]
    longest = max(len(words) for words in [*questions, *(s for story in stories for s in story)])
    if sentence_length is None:
        sentence_length = longest
    else:
        check_int("vectorize_babi", "sentence_length", sentence_length, low=longest,
                  expected=f"sentence_length >= {longest} (the longest sentence)")

    def ids(words: list[str], n: int) -> list[int]:
        try:
            return [vocab.id(w) for w in words] + [0] * (sentence_length - len(words))
        except ValueError as error:
            raise ValueError(f"vectorize_babi: sample {n}: {error}") from None

    B, S, L = len(samples), memory_size, sentence_length
    story_ids = torch.zeros(B, S, L, dtype=torch.int64)
    supporting = torch.zeros(B, S, dtype=torch.bool)
    for n, story in enumerate(stories):
        if story:
            story_ids[n, : len(story)] = torch.tensor([ids(words, n) for words in story])
        supporting[n, list(samples[n].supporting)] = True
    question_ids = torch.tensor([ids(words, n) for n, words in enumerate(questions)], dtype=torch.int64)
    try:
        answers = torch.tensor([vocab.id(sample.answer.lower()) for sample in samples], dtype=torch.int64)
    except ValueError as error:
        raise ValueError(f"vectorize_babi: an answer: {error}") from None
    return BabiBatch(story_ids.to(device), question_ids.to(device), answers.to(device), supporting.to(device))
