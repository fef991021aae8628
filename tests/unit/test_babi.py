"""memlib.tasks.babi: the generator's answers, the file format both ways, samples, vocabulary and tensors.

Shapes: ``B`` samples, ``S`` sentences per story (memory size), ``L`` words per sentence.
"""

from __future__ import annotations

import re

import pytest
import torch

from memlib.tasks.babi import (
    DROP_VERBS,
    MOVE_VERBS,
    TAKE_VERBS,
    TASKS,
    BabiLine,
    BabiSample,
    babi_samples,
    build_vocab,
    format_babi,
    generate_babi,
    parse_babi,
    read_babi,
    tokenize,
    vectorize_babi,
    write_babi,
)

SUPPORTING_FACTS = {1: 1, 2: 2, 3: 3, 4: 1, 6: 1}  # what each task's name promises


# ---- an independent reader of our templates: what the sentences say, and the answers that follow ----

MOVE = re.compile(rf"^(\w+) (?:{'|'.join(MOVE_VERBS)}) the (\w+)\.$")
TAKE = re.compile(rf"^(\w+) (?:{'|'.join(TAKE_VERBS)}) the (\w+)\.$")
DROP = re.compile(rf"^(\w+) (?:{'|'.join(DROP_VERBS)}) the (\w+)\.$")
RELATION = re.compile(r"^The (\w+) is (north|south|east|west) of the (\w+)\.$")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


def oracle(sentences: list[str], question: str) -> str:
    """The answer the sentences imply, by simulating the world they describe."""
    where: dict[str, str] = {}  # actor -> place
    holder: dict[str, str] = {}  # object -> actor
    at: dict[str, str] = {}  # object -> place
    path: dict[str, list[str]] = {}  # object -> places it was in, in order
    relations: set[tuple[str, str, str]] = set()  # (a, direction, b): a is direction of b

    def place(obj: str, location: str) -> None:
        at[obj] = location
        if path.setdefault(obj, [])[-1:] != [location]:
            path[obj].append(location)

    for sentence in sentences:
        if m := MOVE.match(sentence):
            actor, location = m.groups()
            where[actor] = location
            for obj, who in holder.items():
                if who == actor:
                    place(obj, location)
        elif m := TAKE.match(sentence):
            actor, obj = m.groups()
            holder[obj] = actor
            if actor in where:
                place(obj, where[actor])
        elif m := DROP.match(sentence):
            actor, obj = m.groups()
            holder.pop(obj, None)
            if actor in where:
                place(obj, where[actor])
        elif m := RELATION.match(sentence):
            a, direction, b = m.groups()
            relations |= {(a, direction, b), (b, OPPOSITE[direction], a)}
        else:
            raise AssertionError(f"a sentence outside the templates: {sentence!r}")

    if m := re.match(r"^Where is the (\w+)\?$", question):
        return at[m[1]]
    if m := re.match(r"^Where is (\w+)\?$", question):
        return where[m[1]]
    if m := re.match(r"^Is (\w+) in the (\w+)\?$", question):
        return "yes" if where[m[1]] == m[2] else "no"
    if m := re.match(r"^Where was the (\w+) before the (\w+)\?$", question):
        visited = path[m[1]]
        assert visited.count(m[2]) == 1, f"ambiguous: {m[1]} was in the {m[2]} {visited.count(m[2])} times"
        return visited[visited.index(m[2]) - 1]
    if m := re.match(r"^What is (\w+) of the (\w+)\?$", question):
        (answer,) = {a for a, d, b in relations if d == m[1] and b == m[2]}
        return answer
    if m := re.match(r"^What is the (\w+) (\w+) of\?$", question):
        (answer,) = {b for a, d, b in relations if a == m[1] and d == m[2]}
        return answer
    raise AssertionError(f"a question outside the templates: {question!r}")


@pytest.fixture(scope="module", params=sorted(TASKS))
def task(request) -> int:
    return request.param


def test_tasks_cover_the_brief():
    assert {1, 2, 3, 6} <= set(TASKS)


def test_file_format(task):
    text = format_babi(generate_babi(task, 5, seed=3))
    assert text.endswith("\n")
    expected = 1
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if int(head) == 1:
            expected = 1
        assert int(head) == expected, "ids count 1, 2, ... within a story"
        expected += 1
        if "\t" in rest:
            question, answer, support = rest.split("\t")
            assert question.endswith("?") and answer and re.fullmatch(r"\d+( \d+)*", support)
        else:
            assert rest.endswith(".")


def test_round_trip_is_exact(task):
    stories = generate_babi(task, 30, seed=1)
    text = format_babi(stories)
    assert parse_babi(text) == stories
    assert format_babi(parse_babi(text)) == text


def test_write_and_read_a_file(tmp_path):
    stories = generate_babi(2, 4, seed=0)
    path = tmp_path / "qa2_style.txt"
    write_babi(path, stories)
    assert read_babi(path) == stories


def test_every_answer_follows_from_the_story_and_from_its_supporting_facts_alone(task):
    for story in generate_babi(task, 40, seed=2):
        for line_id, line in enumerate(story, start=1):
            if not line.is_question:
                continue
            before = [s.text for s in story[: line_id - 1] if not s.is_question]
            supporting = [story[i - 1].text for i in line.supporting]
            assert oracle(before, line.text) == line.answer
            assert oracle(supporting, line.text) == line.answer
            assert len(line.supporting) == SUPPORTING_FACTS[task]
            assert all(not story[i - 1].is_question for i in line.supporting)


def test_task_1_answer_is_in_the_actors_last_move():
    for sample in babi_samples(generate_babi(1, 40, seed=5)):
        actor = re.match(r"Where is (\w+)\?", sample.question)[1]
        (fact,) = sample.supporting
        assert sample.answer in sample.sentences[fact] and actor in sample.sentences[fact]
        later = [s for s in sample.sentences[fact + 1 :] if s.startswith(actor + " ")]
        assert later == [], "the supporting fact is the actor's most recent move"


def test_stories_end_with_a_question_and_ask_several(task):
    stories = generate_babi(task, 20, seed=4)
    assert all(story[-1].is_question for story in stories)
    questions = [sum(line.is_question for line in story) for story in stories]
    assert max(questions) == (1 if task == 4 else 5)


def test_answers_vary():
    answers = {s.answer for s in babi_samples(generate_babi(6, 40, seed=0))}
    assert answers == {"yes", "no"}
    assert len({s.answer for s in babi_samples(generate_babi(1, 40, seed=0))}) >= 5


def test_same_seed_same_stories_and_other_seed_other_stories(task):
    assert generate_babi(task, 10, seed=7) == generate_babi(task, 10, seed=7)
    assert generate_babi(task, 10, seed=7) != generate_babi(task, 10, seed=8)


def test_stories_do_not_depend_on_global_random_state():
    import random

    random.seed(1)
    torch.manual_seed(1)
    a = generate_babi(2, 5, seed=0)
    random.seed(2)
    torch.manual_seed(2)
    assert generate_babi(2, 5, seed=0) == a


def test_parses_real_babi_layout():
    # Real bAbI files put a space before the question's tab and list supporting ids in any order.
    text = (
        "1 Mina walked to the yard.\n"
        "2 Mina took the lamp.\n"
        "3 Where is Mina? \tyard\t1\n"
        "4 Mina went back to the shed.\n"
        "5 Where is the lamp? \tshed\t4 2\n"
        "1 The shed is west of the yard.\n"
        "2 How do you go from the yard to the shed? \tw,w\t1\n"
    )
    stories = parse_babi(text)
    assert len(stories) == 2 and [len(s) for s in stories] == [5, 2]
    assert stories[0][2] == BabiLine("Where is Mina?", "yard", (1,))
    assert stories[0][4] == BabiLine("Where is the lamp?", "shed", (4, 2))
    samples = babi_samples(stories)
    assert samples[1] == BabiSample(
        ("Mina walked to the yard.", "Mina took the lamp.", "Mina went back to the shed."),
        "Where is the lamp?",
        "shed",
        (2, 1),
    )
    assert samples[2].answer == "w,w"


def test_samples_leave_questions_out_and_index_supporting_statements():
    stories = generate_babi(1, 3, seed=0)
    samples = babi_samples(stories)
    assert len(samples) == 15
    for sample in samples:
        assert all(not s.endswith("?") for s in sample.sentences)
        assert all(0 <= i < len(sample.sentences) for i in sample.supporting)
    assert [len(s.sentences) for s in samples[:5]] == [2, 4, 6, 8, 10]


def test_tokenize():
    assert tokenize("Where was the kettle before the porch?") == [
        "where",
        "was",
        "the",
        "kettle",
        "before",
        "the",
        "porch",
    ]
    assert tokenize("Ada put down the lantern.") == ["ada", "put", "down", "the", "lantern"]


def test_vocab_and_vectorize(dev):
    samples = babi_samples(generate_babi(2, 6, seed=0))
    vocab = build_vocab(samples)
    assert vocab.words[0] == "<pad>" and len(set(vocab.words)) == len(vocab)
    S = max(len(s.sentences) for s in samples)
    batch = vectorize_babi(samples, vocab, memory_size=S + 2, device=dev)
    B = len(samples)
    L = batch.stories.shape[-1]
    assert batch.stories.shape == (B, S + 2, L) and batch.questions.shape == (B, L) and batch.answers.shape == (B,)
    assert batch.supporting.shape == (B, S + 2) and batch.supporting.dtype == torch.bool
    for t in batch:
        assert t.device.type == dev.type
    assert batch.stories.dtype == batch.questions.dtype == batch.answers.dtype == torch.int64
    for b, sample in enumerate(samples):
        n = len(sample.sentences)
        for s, sentence in enumerate(sample.sentences):
            assert vocab.decode(batch.stories[b, s].tolist()) == tokenize(sentence)
        assert (batch.stories[b, n:] == 0).all(), "slots past the story are padding"
        assert vocab.decode(batch.questions[b].tolist()) == tokenize(sample.question)
        assert vocab.words[batch.answers[b]] == sample.answer
        assert batch.supporting[b].nonzero().flatten().tolist() == sorted(sample.supporting)


def test_sentence_length_pads_further():
    samples = babi_samples(generate_babi(1, 2, seed=0))
    batch = vectorize_babi(samples, build_vocab(samples), 10, sentence_length=9)
    assert batch.stories.shape[-1] == batch.questions.shape[-1] == 9


def _samples():
    return babi_samples(generate_babi(1, 2, seed=0))


BAD = [  # (call, exception, message with the expected and the actual value)
    (lambda: generate_babi(5, 3), ValueError, r"expected task in \[1, 2, 3, 4, 6\], got 5"),
    (lambda: generate_babi(1, -2), ValueError, r"n_stories as a non-negative integer, got -2"),
    (
        lambda: vectorize_babi(_samples(), build_vocab(_samples()), 4),
        ValueError,
        r"sample 2 has a story of 6 sentences, expected at most memory_size=4",
    ),
    (lambda: vectorize_babi(_samples(), build_vocab(_samples()), 0), ValueError, r"memory_size as a positive.*got 0"),
    (lambda: vectorize_babi(_samples(), build_vocab(_samples()), -3), ValueError, r"memory_size as a positive.*got -3"),
    (lambda: vectorize_babi([], build_vocab([]), 5), ValueError, r"at least one sample, got none"),
    (
        lambda: vectorize_babi(_samples(), build_vocab(_samples()[:1]), 10),
        ValueError,
        r"sample \d+: Vocab: expected a word of the vocabulary \(\d+ words\), got '\w+'",
    ),
    (
        lambda: vectorize_babi(_samples(), build_vocab(_samples()), 10, sentence_length=2),
        ValueError,
        r"sentence_length >= 5 \(the longest sentence\), got 2",
    ),
    (lambda: parse_babi("2 Ada went to the attic.\n"), ValueError, r"line 1: expected line id 1 .*got 2"),
    (lambda: parse_babi("1 A went to the b.\n3 A ran to the c.\n"), ValueError, r"line 2: expected line id 2 .*got 3"),
    (
        lambda: parse_babi("1 A went to the b.\n2 Where is A?\tb\t2\n"),
        ValueError,
        r"supporting ids in \[1, 1\], got \[2\]",
    ),
    (lambda: parse_babi("1 A went to the b.\n2 Where is A?\tb\tone\n"), ValueError, r"supporting ids as integers"),
    (lambda: parse_babi("x A went.\n"), ValueError, r"line 1: expected 'id text'"),
    (lambda: parse_babi(b"1 A went."), TypeError, r"expected the file's text as a str, got bytes"),
    (
        lambda: babi_samples(parse_babi("1 Where is A?\tb\t\n2 Where is A?\tb\t1\n")),
        ValueError,
        r"line 2: expected supporting ids of statements, got \[1\]",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
