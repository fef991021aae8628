"""Captioned digit scenes, the two captioners (Show, Attend and Tell; Show and Tell) and CaptionExplorer."""

import numpy as np
import pytest
import torch
from jsparity import run_callback

from memlib.captioning import ShowAndTell, ShowAttendTell, caption_loss, caption_scores
from memlib.tasks import handwritten_digits
from memlib.tasks.captions import END, MAX_DIGITS, caption_batch, caption_text, digit_images
from memlib.train import fit, seed_everything
from widgets.base import load_js
from widgets.caption import CaptionExplorer

# Task --------------------------------------------------------------------------------------------


def test_a_scene_shows_its_caption_in_reading_order():
    batch = caption_batch(64, seed=3, step=5)
    assert torch.equal(batch.images, caption_batch(64, seed=3, step=5).images)  # a function of (seed, step)
    for b in range(64):
        n = int(batch.lengths[b]) - 1
        assert 1 <= n <= MAX_DIGITS and batch.captions[b, n] == END and (batch.cells[b, n:] == -1).all()
        cells = batch.cells[b, :n].tolist()
        assert cells == sorted(cells) and len(set(cells)) == n  # reading order, one digit per cell
        ink = batch.images[b, 0].view(3, 8, 3, 8).sum((1, 3)).flatten()  # (9,) ink per cell
        assert set(torch.nonzero(ink).flatten().tolist()) <= set(cells)  # nothing drawn outside the named cells
        assert caption_text(batch.captions[b]) == " ".join(str(int(t)) for t in batch.captions[b, :n])


def test_the_splits_share_out_scikit_learns_digits_between_them():
    images, labels = handwritten_digits()  # (1797, 8, 8), (1797,): the loader the few-shot episodes use too
    (train, train_labels), (test, test_labels) = digit_images("train"), digit_images("test")
    assert len(train) + len(test) == len(images) == 1797
    together = torch.cat([train, test]).flatten(1)
    order = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731
    assert order(together) == order(images.flatten(1))  # a permutation: each image once
    assert torch.bincount(torch.cat([train_labels, test_labels])).tolist() == torch.bincount(labels).tolist()


def test_test_scenes_use_handwriting_never_seen_in_training():
    train, test = digit_images("train")[0], digit_images("test")[0]
    assert len(train) + len(test) == 1797
    same = (train.flatten(1)[:, None] == test.flatten(1)[None]).all(-1)  # (n_train, n_test)
    assert not same.any()
    with pytest.raises(ValueError, match="expected split"):
        caption_batch(2, split="validation")


# Models ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ShowAttendTell, ShowAndTell])
def test_teacher_forcing_and_greedy_decoding_agree_on_the_models_own_caption(cls):
    seed_everything(0)
    model = cls().eval()
    images = caption_batch(5, seed=1).images
    out = model.generate(images)
    tokens = out[0] if isinstance(out, tuple) else out
    forced = model(images, tokens)
    logits = forced[0] if isinstance(forced, tuple) else forced
    assert torch.equal(logits.argmax(-1), tokens)  # fed its own words, it predicts them again


def test_attention_weights_are_a_distribution_over_the_regions():
    model = ShowAttendTell()
    batch = caption_batch(4)
    logits, weights = model(batch.images, batch.captions)
    assert logits.shape == (4, 4, 11) and weights.shape == (4, 4, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 4))
    assert (weights >= 0).all()


def test_bad_captions_are_named():
    with pytest.raises(ValueError, match=r"ShowAttendTell: expected token ids in \[0, 11\), got min 0, max 12"):
        ShowAttendTell()(torch.zeros(1, 1, 24, 24), torch.tensor([[0, 12]]))
    expected = r"ShowAndTell: expected images of shape B, 1, 24, 24 = \(\?, 1, 24, 24\), got \(1, 1, 20, 20\)"
    with pytest.raises(ValueError, match=expected):
        ShowAndTell()(torch.zeros(1, 1, 20, 20), torch.tensor([[1, 10]]))


def test_an_attentive_captioner_learns_to_read_one_digit_scenes():
    seed_everything(0)
    model = ShowAttendTell()
    fit(model, lambda step: caption_batch(32, seed=0, step=step), caption_loss, steps=150, lr=3e-3, progress=False)
    scores = caption_scores(model, caption_batch(256, split="test"))
    # chance for a word is 1 in 11; after 150 steps the model has learned at least the <end> after the digits
    assert scores.words > 0.35, scores


# Explorer ----------------------------------------------------------------------------------------


def _explorer(scenes=3):
    batch = caption_batch(scenes, seed=2, split="test")
    torch.manual_seed(0)
    tokens, weights = ShowAttendTell().generate(batch.images)
    data = CaptionExplorer.prepare(batch.images, tokens, weights, batch.captions, batch.lengths, batch.cells)
    return CaptionExplorer(data)


READ = "({cells: a.cells.data, words: a.words.data, div: a.div.text, scene: a.scene.data.image[0]})"


def test_the_sliders_js_shows_what_python_shows():
    explorer = _explorer()
    [callback] = explorer.layout.select_one({"name": "caption_word_slider"}).js_property_callbacks["change:value"]
    assert callback.code == load_js("caption")
    cases = [(s, w) for s in (1, 2, 3, 9) for w in (1, 2, 4)]  # 9: clamped to the last scene
    got = run_callback(callback, [{"scene_slider": s, "word_slider": w} for s, w in cases], READ)
    for (s, w), page in zip(cases, got, strict=True):
        want = CaptionExplorer.view(explorer.data, s, w)
        np.testing.assert_allclose(page["cells"]["alpha"], want["alpha"], rtol=1e-6)  # float32 in the page
        assert page["cells"]["label"] == want["label"], (s, w)
        assert page["words"]["text"] == want["text"] and page["words"]["fill"] == want["fill"], (s, w)
        assert page["div"] == want["sentence"], (s, w)
        image = np.asarray(page["scene"]).reshape(24, 24)[::-1]
        np.testing.assert_allclose(image, explorer.data["images"][want["scene"]], rtol=1e-6)


def test_prepare_names_what_is_wrong():
    batch = caption_batch(2)
    tokens, weights = ShowAttendTell().generate(batch.images)
    with pytest.raises(ValueError, match=r"expected weights of shape \(2, 4, 9\)"):
        CaptionExplorer.prepare(batch.images, tokens, weights[:, :, :4], batch.captions, batch.lengths, batch.cells)
    with pytest.raises(ValueError, match="expected weights with finite values"):
        CaptionExplorer.prepare(batch.images, tokens, weights * np.nan, batch.captions, batch.lengths, batch.cells)


def test_live_seed_keeps_the_figures_on_a_bad_seed():
    batch = caption_batch(2, seed=5, split="test")
    calls = []

    def compute(request):
        calls.append(request)
        b = caption_batch(2, seed=request["seed"], split="test")
        tokens, weights = ShowAttendTell().generate(b.images)
        return CaptionExplorer.prepare(b.images, tokens, weights, b.captions, b.lengths, b.cells)

    tokens, weights = ShowAttendTell().generate(batch.images)
    explorer = CaptionExplorer(
        CaptionExplorer.prepare(batch.images, tokens, weights, batch.captions, batch.lengths, batch.cells), compute
    )
    explorer.layout  # noqa: B018
    before = explorer.sources["caption_scene"].data["image"][0].copy()
    assert explorer.recompute({"seed": 7}) is True and explorer.settings == {"seed": 7}
    assert not np.array_equal(explorer.sources["caption_scene"].data["image"][0], before)
    assert explorer.recompute({"seed": -1}) is False
    assert explorer.last_error.startswith("Not updated: ") and "seed" in explorer.last_error
    assert explorer.settings == {"seed": 7} and calls == [{"seed": 7}]
